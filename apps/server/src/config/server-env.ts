import { DNS_LABEL, DNS_LABEL_HINT, type EnvSpec, PROTECTION_ENV, RUNTIME_ENV } from '@periscope/config';

import { APP_VERSION } from '../version';

export const TIER_NAMES = ['read', 'triage', 'write', 'maintain', 'admin'] as const;
export type TierName = (typeof TIER_NAMES)[number];

/** Every environment variable the server reads. Nothing else in the server reads process.env. */
export const SERVER_ENV = {
  // Core
  PERISCOPE_LISTEN_ADDRESS: {
    kind: 'string',
    default: '127.0.0.1',
    description: 'Address the HTTP server binds (0.0.0.0 in a container).',
  },
  PERISCOPE_HTTP_PORT: {
    kind: 'int',
    default: 8080,
    min: 1,
    max: 65535,
    description: 'HTTP port for the UI, the API and the terminal WebSockets.',
  },
  PERISCOPE_PUBLIC_URL: {
    kind: 'string',
    default: 'http://localhost:8080',
    pattern: /^https?:\/\/[^/\s]+\/?$/,
    patternHint: 'an http(s) origin such as https://periscope.example.com',
    description:
      'Origin operators use in the browser; OIDC redirects, the Origin checks (WebSockets and state-changing requests), the Host check and the __Host- cookie (https) derive from it.',
  },
  PERISCOPE_ALLOWED_ORIGINS: {
    kind: 'list',
    default: [],
    pattern: /^https?:\/\/[^/\s]+$/,
    patternHint: 'http(s) origins',
    description:
      'Extra browser origins allowed to open terminal WebSockets and send state-changing requests; their hosts pass the Host check (the public URL is always allowed).',
  },
  PERISCOPE_METRICS_PORT: {
    kind: 'int',
    default: 9090,
    min: 0,
    max: 65535,
    description:
      'Port of the ops listener (/metrics, /readyz, /healthz) on the listen address, apart from the public port; 0 turns it off.',
  },
  PERISCOPE_LOG_LEVEL: {
    kind: 'enum',
    default: 'info',
    values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'],
    description: 'Log level of the JSON logs.',
  },
  ...RUNTIME_ENV,
  PERISCOPE_DATA_DIR: {
    kind: 'string',
    default: './data',
    description: 'Directory for the SQLite audit store and the agent CA when no Secret holds it.',
  },
  PERISCOPE_WEB_DIR: {
    kind: 'string',
    default: undefined,
    description: 'Directory of the built web UI; defaults to the one shipped with the server.',
  },
  PERISCOPE_CLUSTERS_FILE: {
    kind: 'string',
    default: undefined,
    description: 'YAML file listing the clusters (see the clusters file reference). Unset means no clusters.',
  },
  PERISCOPE_AUTH_FILE: {
    kind: 'string',
    default: undefined,
    description: 'YAML file with OIDC, authorization mode and tiers (see the auth file reference).',
  },
  PERISCOPE_AUTH_MODE: {
    kind: 'enum',
    default: 'oidc',
    values: ['oidc', 'dev'],
    description: 'oidc for real deployments; dev enables fixed local users and only binds to loopback.',
  },
  PERISCOPE_OIDC_CLIENT_SECRET: {
    kind: 'string',
    default: undefined,
    sensitive: true,
    description: 'OIDC client secret; overrides oidc.clientSecret in the auth file.',
  },

  // Shared state of several replicas (apps/server/src/shared-state)
  PERISCOPE_REDIS_URL: {
    kind: 'string',
    default: undefined,
    sensitive: true,
    pattern: /^rediss?:\/\/\S+$/,
    patternHint: 'a redis:// or rediss:// URL such as redis://:password@redis:6379/0',
    description:
      'Redis holding the state replicas share (cluster-shell and pod-exec cap slots, terminal tickets, login sessions, registration tokens, session and agent ownership, the replica directory, the reaper lock); unset: in memory, one replica. The password never reaches the logs.',
  },
  PERISCOPE_REDIS_KEY_PREFIX: {
    kind: 'string',
    default: 'periscope:',
    pattern: /^[A-Za-z0-9:._-]{1,64}$/,
    patternHint: 'up to 64 letters, digits, ":", ".", "_" or "-"',
    description: 'Prefix of every Redis key of this deployment (two deployments may share one Redis).',
  },
  PERISCOPE_SESSION_KEY: {
    kind: 'string',
    default: undefined,
    sensitive: true,
    pattern: /^[A-Za-z0-9+/]{43}=$/,
    patternHint: '32 random bytes in base64 (openssl rand -base64 32)',
    description:
      'With PERISCOPE_REDIS_URL: the key every replica shares to seal sign-ins in flight and encrypt the OpenID tokens of login sessions kept in Redis (required in oidc mode); unset: a random key per process.',
  },
  PERISCOPE_REPLICA_ID: {
    kind: 'string',
    default: undefined,
    pattern: /^[A-Za-z0-9._-]{1,100}$/,
    patternHint: 'up to 100 letters, digits, ".", "_" or "-" (a pod name)',
    description:
      'Name of this replica in the shared state and the logs; unset: the host name (the pod name) with a random suffix, new at every start.',
  },
  PERISCOPE_REPLICA_URL: {
    kind: 'string',
    default: undefined,
    pattern: /^http:\/\/[^/\s]+\/?$/,
    patternHint:
      'an http:// base URL other replicas reach this one at, such as http://10.1.2.3:8080 (the pod IP)',
    description:
      'With PERISCOPE_REDIS_URL: the URL other replicas reach this one at to forward a browser request or terminal socket for a cluster tunnel or session it holds; unset: http://<host name>:<listening port>.',
  },
  PERISCOPE_REPLICA_SECRET: {
    kind: 'string',
    default: undefined,
    sensitive: true,
    pattern: /^\S{32,512}$/,
    patternHint: 'at least 32 characters without spaces (openssl rand -base64 32), the same on every replica',
    description:
      'With PERISCOPE_REDIS_URL (required there): the key every replica shares to sign the requests it forwards to another replica (HMAC-SHA256); a forged or stale signature is refused with 403.',
  },

  // Agent tunnel
  PERISCOPE_AGENT_TUNNEL_ADDRESS: {
    kind: 'string',
    default: '127.0.0.1',
    description: 'Address of the agent tunnel listener (mTLS); 0.0.0.0 in a container.',
  },
  PERISCOPE_AGENT_TUNNEL_PORT: {
    kind: 'int',
    default: 8443,
    min: 1,
    max: 65535,
    description:
      'Port of the agent tunnel listener. It starts only when the clusters file has an agent cluster.',
  },
  PERISCOPE_AGENT_TUNNEL_URL: {
    kind: 'string',
    default: 'https://localhost:8443',
    pattern: /^https:\/\/[^\s/]+\/?$/,
    patternHint: 'an https:// origin agents can reach',
    description: 'URL agents dial for the tunnel; returned to them at registration.',
  },
  PERISCOPE_AGENT_TUNNEL_SANS: {
    kind: 'list',
    default: ['localhost', '127.0.0.1'],
    description:
      'DNS names and IPs in the tunnel listener certificate (must include the host of the tunnel URL).',
  },
  PERISCOPE_AGENT_CA_SECRET: {
    kind: 'string',
    default: undefined,
    pattern: /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/,
    patternHint: 'namespace/name of a Secret',
    description:
      "Keep the agent CA in this Secret (namespace/name, through the server's in-cluster identity) instead of the data directory; required with several replicas.",
  },
  PERISCOPE_AGENT_TUNNEL_GRACE_SECONDS: {
    kind: 'int',
    default: 120,
    min: 5,
    max: 3600,
    description:
      'How long open streams survive a dropped tunnel before they are reset, on both ends: agents take it from the server at every reconnect.',
  },

  // Cluster shell (names and defaults as in the operator guide)
  PERISCOPE_CLUSTER_SHELL_ENABLED: {
    kind: 'boolean',
    default: false,
    description: 'Turn the cluster shell on. Requires authorization mode tier.',
  },
  PERISCOPE_CLUSTER_SHELL_MODE: {
    kind: 'enum',
    default: 'bash',
    values: ['bash', 'kubectl'],
    description:
      'Shell mode: bash (a bash session), or kubectl (a restricted prompt that runs only kubectl and helm commands).',
  },
  PERISCOPE_CLUSTER_SHELL_TIERS: {
    kind: 'list',
    default: ['admin'],
    values: TIER_NAMES,
    nonEmpty: true,
    description: 'Tiers allowed to open a cluster shell.',
  },
  PERISCOPE_CLUSTER_SHELL_NAMESPACE: {
    kind: 'string',
    default: 'periscope-system',
    pattern: DNS_LABEL,
    patternHint: DNS_LABEL_HINT,
    description: 'Namespace where session Secrets and Pods are created.',
  },
  PERISCOPE_CLUSTER_SHELL_IDLE_SECONDS: {
    kind: 'int',
    default: 1200,
    min: 60,
    max: 86_400,
    description: 'Idle time (no stdin or stdout byte) before a session is cut.',
  },
  PERISCOPE_CLUSTER_SHELL_POD_START_TIMEOUT_SECONDS: {
    kind: 'int',
    default: 30,
    min: 5,
    max: 600,
    description: 'How long to wait for the session pod to be Running and Ready.',
  },
  PERISCOPE_CLUSTER_SHELL_TRANSCRIPT_MAX_BYTES: {
    kind: 'int',
    default: 1_048_576,
    min: 1024,
    max: 67_108_864,
    description: 'Maximum bytes of the in-pod command audit file read at teardown.',
  },
  PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER: {
    kind: 'int',
    default: 2,
    min: 1,
    max: 1000,
    description: 'Concurrent cluster shells per OIDC subject, across all clusters.',
  },
  PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_TOTAL: {
    kind: 'int',
    default: 10,
    min: 1,
    max: 10_000,
    description: 'Concurrent cluster shells per cluster, across all subjects.',
  },
  PERISCOPE_CLUSTER_SHELL_IMAGE: {
    kind: 'string',
    default: `registry.example.com/periscope/periscope-shell:${APP_VERSION}`,
    pattern: /^\S+$/,
    patternHint: 'an image reference without spaces',
    description:
      'Image of the session pod. The default registry is a placeholder where nothing is published: set where you push the shell image.',
  },
  PERISCOPE_CLUSTER_SHELL_IMAGE_PULL_POLICY: {
    kind: 'enum',
    default: 'IfNotPresent',
    values: ['Always', 'IfNotPresent', 'Never'],
    description: 'Pull policy of the session pod image.',
  },
  PERISCOPE_CLUSTER_SHELL_MODE_BY_TIER: {
    kind: 'list',
    default: [],
    pattern: /^(read|triage|write|maintain|admin)=(bash|kubectl)$/,
    patternHint: 'tier=mode pairs such as read=kubectl,triage=kubectl (modes: bash, kubectl)',
    description:
      'Shell mode per tier, over PERISCOPE_CLUSTER_SHELL_MODE (e.g. read=kubectl,triage=kubectl); a cluster may override it (clusterShell.mode, clusterShell.modeByTier in the clusters file).',
  },
  PERISCOPE_CLUSTER_SHELL_POD_RESOURCES: {
    kind: 'string',
    default: undefined,
    description:
      'Session pod resources as JSON, e.g. {"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"cpu":"1","memory":"512Mi"}} (cpu, memory, ephemeral-storage); unset: requests 50m/64Mi, limits 1/512Mi.',
  },
  PERISCOPE_CLUSTER_SHELL_POD_NODE_SELECTOR: {
    kind: 'string',
    default: undefined,
    description: 'Session pod nodeSelector as a JSON object of label key to value.',
  },
  PERISCOPE_CLUSTER_SHELL_POD_TOLERATIONS: {
    kind: 'string',
    default: undefined,
    description:
      'Session pod tolerations as a JSON list, e.g. [{"key":"dedicated","operator":"Equal","value":"ops","effect":"NoSchedule"}].',
  },
  PERISCOPE_CLUSTER_SHELL_POD_PRIORITY_CLASS_NAME: {
    kind: 'string',
    default: undefined,
    pattern: /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/,
    patternHint: 'a PriorityClass name (DNS subdomain)',
    description: 'PriorityClass of the session pod (it must exist on every cluster that uses it).',
  },
  PERISCOPE_CLUSTER_SHELL_POD_LABELS: {
    kind: 'string',
    default: undefined,
    description:
      "Extra labels of the session pod and its objects as a JSON object; Periscope's own (periscope.io/*, app.kubernetes.io/name) are refused.",
  },
  PERISCOPE_CLUSTER_SHELL_POD_ANNOTATIONS: {
    kind: 'string',
    default: undefined,
    description:
      'Extra annotations of the session pod as a JSON object; periscope.io/* and AppArmor/seccomp annotations are refused.',
  },
  PERISCOPE_CLUSTER_SHELL_POD_IMAGE_PULL_SECRETS: {
    kind: 'list',
    default: [],
    pattern: /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/,
    patternHint: 'Secret names (DNS subdomains)',
    maxItems: 16,
    description: 'Names of image pull Secrets in the shell namespace for the session pod image.',
  },
  PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS: {
    kind: 'int',
    default: 28_800,
    min: 600,
    max: 604_800,
    description:
      'Hard maximum length of one session, whatever the activity; the session token lives this long.',
  },
  PERISCOPE_CLUSTER_SHELL_MAX_SESSION_WARN_SECONDS: {
    kind: 'int',
    default: 300,
    min: 0,
    max: 86_400,
    description:
      'Lead time of the warning before the maximum length ends a session (a `max_warn` frame and a banner; pod exec and cluster shell); 0 = no warning. Less than PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS.',
  },
  PERISCOPE_CLUSTER_SHELL_READINESS_SECONDS: {
    kind: 'int',
    default: 60,
    min: 5,
    max: 3600,
    description:
      'How often the server checks its own RBAC for the cluster shell on each in-cluster, kubeconfig and eks cluster (SelfSubjectRulesReview/AccessReview); a cluster that lacks it offers no shell, with the missing piece named. A refused cluster is checked again when asked about, at most every 5 s.',
  },

  // Periscope's own namespaces (admin-only) and the tier binder, on the server's own cluster
  ...PROTECTION_ENV,

  // Pod exec
  PERISCOPE_EXEC_IDLE_SECONDS: {
    kind: 'int',
    default: 600,
    min: 60,
    max: 86_400,
    description: 'Idle time before a pod-exec session is cut.',
  },
  PERISCOPE_EXEC_IDLE_WARN_SECONDS: {
    kind: 'int',
    default: 30,
    min: 5,
    max: 3600,
    description: 'Lead time of the idle warning (pod exec and cluster shell).',
  },
  PERISCOPE_EXEC_HEARTBEAT_SECONDS: {
    kind: 'int',
    default: 20,
    min: 5,
    max: 300,
    description: 'WebSocket heartbeat interval (pod exec and cluster shell).',
  },
  PERISCOPE_EXEC_MAX_SESSIONS_PER_USER: {
    kind: 'int',
    default: 5,
    min: 1,
    max: 1000,
    description: 'Concurrent pod-exec sessions per OIDC subject.',
  },
  PERISCOPE_EXEC_MAX_SESSIONS_TOTAL: {
    kind: 'int',
    default: 50,
    min: 1,
    max: 10_000,
    description: 'Concurrent pod-exec sessions per cluster.',
  },
  // Terminal input (both session kinds)
  PERISCOPE_TERMINAL_STDIN_BYTES_PER_SECOND: {
    kind: 'int',
    default: 1_048_576,
    min: 1024,
    max: 1_073_741_824,
    description:
      "Stdin rate limit per terminal socket, with a burst of four seconds' worth; a socket sending faster is closed with E_RATE_LIMIT. Stdin is flow controlled besides: the browser socket is paused while the container does not read.",
  },
  // Terminal resume (both session kinds)
  PERISCOPE_RESUME_GRACE_SECONDS: {
    kind: 'int',
    default: 60,
    min: 0,
    max: 3600,
    description:
      'How long a terminal session survives an unplanned browser disconnect, waiting to be resumed (0 turns resume off). Cap slots stay held meanwhile.',
  },
  PERISCOPE_RESUME_BUFFER_BYTES: {
    kind: 'int',
    default: 1_048_576,
    min: 65_536,
    max: 67_108_864,
    description:
      'Output kept per session for replay on resume; while a disconnected session has this much unread output the shell is paused, so nothing is lost.',
  },

  // Leftover cleanup
  PERISCOPE_REAPER_INTERVAL_SECONDS: {
    kind: 'int',
    default: 300,
    min: 5,
    max: 86_400,
    description:
      'How often the server looks for cluster-shell Pods and Secrets of sessions it does not know (also a minute after start, at most one interval, and 5 s after an agent connects).',
  },
  PERISCOPE_REAPER_GRACE_SECONDS: {
    kind: 'int',
    default: 600,
    min: 0,
    max: 86_400,
    description: "Minimum age of an unknown session's objects before the reaper deletes them.",
  },

  // Session recording
  PERISCOPE_SESSION_RECORDING: {
    kind: 'enum',
    default: 'output',
    values: ['off', 'output', 'output+input'],
    description:
      'Server-side recording of every cluster-shell and pod-exec session (asciicast v2 under PERISCOPE_DATA_DIR/recordings, or in PostgreSQL large objects when PERISCOPE_DATABASE_URL is set): off, output, or output+input (input lines redacted as the command log is, never lines typed with echo off). Per cluster: clusterShell.recording and exec.recording in the clusters file.',
  },
  PERISCOPE_RECORDING_MAX_SESSION_MB: {
    kind: 'int',
    default: 128,
    min: 1,
    max: 65_536,
    description:
      "Size cap of one session's recording; past it the recording ends with a `truncated` marker (the session goes on).",
  },
  PERISCOPE_RECORDING_MAX_TOTAL_MB: {
    kind: 'int',
    default: 512,
    min: 1,
    max: 16_777_216,
    description:
      "Size bound of all recordings; the oldest ended sessions' recordings are deleted when it is exceeded (checked with the audit retention, hourly and at start; recordings older than PERISCOPE_AUDIT_RETENTION_DAYS go too). Keep it, with PERISCOPE_AUDIT_MAX_MB, below the data volume's size (the chart's persistence.size), or with PERISCOPE_DATABASE_URL within what the database can hold.",
  },

  // Audit
  PERISCOPE_AUDIT_RETENTION_DAYS: {
    kind: 'int',
    default: 365,
    min: 1,
    max: 36_500,
    description:
      'Audit events older than this are deleted from the audit store, SQLite or PostgreSQL (checked hourly and at start).',
  },
  PERISCOPE_AUDIT_MAX_MB: {
    kind: 'int',
    default: 1024,
    min: 1,
    max: 1_048_576,
    description:
      "Size bound of the audit store (SQLite: pages in use; PostgreSQL: the events' row bytes); the oldest events are deleted, fairly by actor, when it is exceeded. Every event is also written to stdout as a JSON line.",
  },
  PERISCOPE_DATABASE_URL: {
    kind: 'string',
    default: undefined,
    sensitive: true,
    pattern: /^postgres(?:ql)?:\/\/\S+$/,
    patternHint:
      'a postgres:// URL such as postgres://periscope:password@db:5432/periscope?sslmode=verify-full',
    description:
      "PostgreSQL holding the audit store, shared by every replica (TLS through the URL's sslmode; the schema is migrated at start); unset: SQLite under PERISCOPE_DATA_DIR. The password never reaches the logs.",
  },
} as const satisfies EnvSpec;
