import { DNS_LABEL, DNS_LABEL_HINT, type EnvSpec, PROTECTION_ENV, RUNTIME_ENV } from '@periscope/config';

/** Every environment variable the agent reads. Nothing else in the agent reads process.env. */
export const AGENT_ENV = {
  PERISCOPE_SERVER_URL: {
    kind: 'string',
    default: undefined,
    pattern: /^(https|wss):\/\/[^\s/]+(\/\S*)?$/,
    patternHint: 'the https:// URL of the server tunnel listener',
    description: 'Tunnel endpoint of the central server (mTLS). Required.',
  },
  PERISCOPE_REGISTRATION_URL: {
    kind: 'string',
    default: undefined,
    pattern: /^https?:\/\/\S+$/,
    patternHint: 'the https:// base URL of the central server API',
    description:
      'Where to redeem the registration token; defaults to the server URL. Must be https:// (plain http only to a loopback host).',
  },
  PERISCOPE_CLUSTER_NAME: {
    kind: 'string',
    default: undefined,
    pattern: DNS_LABEL,
    patternHint: DNS_LABEL_HINT,
    description: "This cluster's name, exactly as in the server's clusters file. Required.",
  },
  PERISCOPE_REGISTRATION_TOKEN: {
    kind: 'string',
    default: undefined,
    sensitive: true,
    description:
      'Single-use registration token minted by an admin; only needed until the state Secret holds a certificate.',
  },
  PERISCOPE_SERVER_CA_HASH: {
    kind: 'string',
    default: undefined,
    pattern: /^sha256:[0-9a-f]{64}$/,
    patternHint: 'sha256:<64 lowercase hex digits> (SPKI pin of the server certificate)',
    description: 'Optional SPKI pin checked on the registration call (for self-signed servers).',
  },
  PERISCOPE_AGENT_NAMESPACE: {
    kind: 'string',
    default: 'periscope-system',
    pattern: DNS_LABEL,
    patternHint: DNS_LABEL_HINT,
    description: 'Namespace the agent runs in (holds its state Secret).',
  },
  PERISCOPE_AGENT_SECRET_NAME: {
    kind: 'string',
    default: 'periscope-agent-state',
    pattern: /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/,
    patternHint: 'a DNS subdomain name',
    description: 'Secret holding the agent key, certificate and the server CA.',
  },
  PERISCOPE_AGENT_LISTEN_ADDRESS: {
    kind: 'string',
    default: '0.0.0.0',
    description: 'Address of the health and metrics listener.',
  },
  PERISCOPE_AGENT_HEALTH_PORT: {
    kind: 'int',
    default: 8081,
    min: 1,
    max: 65535,
    description: 'Port of /healthz, /readyz and /metrics.',
  },
  PERISCOPE_LOG_LEVEL: {
    kind: 'enum',
    default: 'info',
    values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'],
    description: 'Log level of the JSON logs.',
  },
  ...RUNTIME_ENV,
  PERISCOPE_CLUSTER_SHELL_ENABLED: {
    kind: 'boolean',
    default: false,
    description: 'Accept cluster-shell sessions on this cluster (the chart installs the RBAC they need).',
  },
  PERISCOPE_CLUSTER_SHELL_TIERS: {
    kind: 'list',
    default: ['admin'],
    values: ['read', 'triage', 'write', 'maintain', 'admin'],
    nonEmpty: true,
    description: 'Tiers this cluster provisions shells for; must match the server.',
  },
  PERISCOPE_CLUSTER_SHELL_NAMESPACE: {
    kind: 'string',
    default: 'periscope-system',
    pattern: DNS_LABEL,
    patternHint: DNS_LABEL_HINT,
    description: 'Namespace of session Secrets and Pods; must match the server.',
  },
  PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS: {
    kind: 'int',
    default: 28_800,
    min: 10,
    max: 604_800,
    description:
      "Longest cluster-shell session of the server (keep it equal to the server's); while the server is unreachable the agent deletes shell objects older than this plus PERISCOPE_REAPER_GRACE_SECONDS. The server's own value, announced at every connect, wins.",
  },
  PERISCOPE_REAPER_INTERVAL_SECONDS: {
    kind: 'int',
    default: 300,
    min: 1,
    max: 86_400,
    description:
      "How often the agent sweeps its cluster's expired shell objects while the server is unreachable (and once at start); while connected the server's reaper does it.",
  },
  PERISCOPE_REAPER_GRACE_SECONDS: {
    kind: 'int',
    default: 600,
    min: 0,
    max: 86_400,
    description:
      'Margin beyond the maximum session length before the agent sweep deletes a shell object (clock skew, teardown in progress).',
  },
  PERISCOPE_AGENT_REHOME_BUFFER_BYTES: {
    kind: 'int',
    default: 16 * 1024 * 1024,
    min: 0,
    max: 1024 * 1024 * 1024,
    description:
      "Output the agent keeps over all its open streams so that a session whose server replica died can move to the replica its tunnel reconnects to without losing a byte (per stream the server's PERISCOPE_RESUME_BUFFER_BYTES, announced at every connect, 1 MiB by default; only for a server with several replicas, which says so at connect: nothing is kept for one replica). Past it the stream that grows keeps less: a browser further behind than what was kept cannot resume the moved session (E_SESSION_GONE, 'output no longer kept'). 0 turns re-homing off (such sessions end replica_lost).",
  },
  ...PROTECTION_ENV,
} as const satisfies EnvSpec;
