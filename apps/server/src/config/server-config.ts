import { ConfigError, maskSecrets, parseEnv, type ConfigProblem } from '@periscope/config';

import { DEFAULT_AUTH, parseAuthFile, type AuthSettings } from './auth-file';
import { parseClustersFile, type ClusterEntry, type RecordingMode } from './clusters-file';
import { SERVER_ENV, type TierName } from './server-env';
import { parsePodTemplateEnv, type ShellMode, type ShellPodTemplate } from './shell-pod-template';

export interface ClusterShellSettings {
  enabled: boolean;
  mode: ShellMode;
  /** the mode of these tiers, over `mode` (PERISCOPE_CLUSTER_SHELL_MODE_BY_TIER) */
  modeByTier: Partial<Record<TierName, ShellMode>>;
  tiers: TierName[];
  namespace: string;
  idleSeconds: number;
  podStartTimeoutSeconds: number;
  transcriptMaxBytes: number;
  maxSessionsPerUser: number;
  maxSessionsTotal: number;
  image: string;
  imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  maxSessionSeconds: number;
  /** lead time of the warning before maxSessionSeconds ends a session (both kinds); 0 = none */
  maxSessionWarnSeconds: number;
  /** how often the shell RBAC of direct clusters is checked (shell-readiness.service.ts) */
  readinessSeconds: number;
  /** resources, scheduling, extra metadata and pull secrets of the session pod */
  pod: ShellPodTemplate;
}

export interface ExecSettings {
  idleSeconds: number;
  idleWarnSeconds: number;
  heartbeatSeconds: number;
  maxSessionsPerUser: number;
  maxSessionsTotal: number;
}

/** The server's whole configuration, validated once at start-up. */
export interface ServerConfig {
  http: {
    listenAddress: string;
    port: number;
    publicUrl: string;
    allowedOrigins: string[];
    /** the ops listener (/metrics, /readyz, /healthz); 0 = off */
    metricsPort: number;
  };
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /** V8 old-generation growth between full GCs, % of the live heap; 0 = V8's default */
  heapGrowingPercent: number;
  dataDir: string;
  webDir?: string;
  authMode: 'oidc' | 'dev';
  auth: AuthSettings;
  clusters: ClusterEntry[];
  clusterShell: ClusterShellSettings;
  /**
   * Periscope's own namespaces on the cluster the server runs in (PERISCOPE_PROTECTED_NAMESPACES:
   * the chart's release namespace and protectedNamespaces), and whether the server keeps the tier
   * bindings there (PERISCOPE_TIER_BINDINGS).
   */
  protection: { ownNamespaces: string[]; tierBindings: boolean };
  exec: ExecSettings;
  /** stdin rate limit per terminal socket (burst: four seconds' worth) */
  terminal: { stdinBytesPerSecond: number };
  resume: { graceSeconds: number; bufferBytes: number };
  reaper: { intervalSeconds: number; graceSeconds: number };
  /**
   * `postgres`: the audit store in PostgreSQL (PERISCOPE_DATABASE_URL), the password kept apart from
   * the URL so the logged configuration masks it; SQLite under dataDir without it.
   */
  audit: { retentionDays: number; maxBytes: number; postgres?: { url: string; password?: string } };
  /** server-side session recording (apps/server/src/recording); per-cluster overrides in the clusters file */
  recording: { mode: RecordingMode; maxSessionBytes: number; maxTotalBytes: number };
  /**
   * State several replicas share (apps/server/src/shared-state): in memory without `redis`. The
   * password is kept apart from the URL, so the logged configuration masks it.
   */
  sharedState: {
    redis?: { url: string; password?: string };
    keyPrefix: string;
    replicaId?: string;
    /** PERISCOPE_REPLICA_URL: where other replicas reach this one (unset: host name and listening port) */
    replicaUrl?: string;
    /** PERISCOPE_REPLICA_SECRET: signs replica-to-replica forwarding (required with `redis`) */
    replicaSecret?: string;
    /**
     * PERISCOPE_SESSION_KEY (32 bytes, base64): seals sign-ins in flight and session tokens at
     * rest; a string under a secret-looking name, so the logged configuration masks it
     */
    sessionSecret?: string;
  };
  agentTunnel: {
    address: string;
    port: number;
    url: string;
    sans: string[];
    graceSeconds: number;
    caSecret?: { namespace: string; name: string };
  };
}

export type ReadFile = (path: string) => string;

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/**
 * Builds the typed configuration from the environment and the files it names. Throws one
 * ConfigError listing every problem (setting, value, what is allowed) when anything is wrong.
 */
export function loadServerConfig(
  env: Readonly<Record<string, string | undefined>>,
  readFile: ReadFile,
): ServerConfig {
  const { values: v, problems } = parseEnv(SERVER_ENV, env);
  const read = (setting: string, path: string): string | undefined => {
    try {
      return readFile(path);
    } catch (err) {
      problems.push({
        setting,
        value: path,
        allowed: `a readable file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      });
      return undefined;
    }
  };

  let clusters: ClusterEntry[] = [];
  if (v.PERISCOPE_CLUSTERS_FILE !== undefined) {
    const text = read('PERISCOPE_CLUSTERS_FILE', v.PERISCOPE_CLUSTERS_FILE);
    if (text !== undefined) {
      const parsed = parseClustersFile(text, v.PERISCOPE_CLUSTERS_FILE);
      clusters = parsed.clusters;
      problems.push(...parsed.problems);
    }
  }

  let auth: AuthSettings = DEFAULT_AUTH;
  const authFile = v.PERISCOPE_AUTH_FILE;
  if (authFile !== undefined) {
    const text = read('PERISCOPE_AUTH_FILE', authFile);
    if (text !== undefined) {
      const parsed = parseAuthFile(text, authFile);
      auth = parsed.auth;
      problems.push(...parsed.problems);
    }
  }
  if (auth.oidc && v.PERISCOPE_OIDC_CLIENT_SECRET !== undefined) {
    auth = { ...auth, oidc: { ...auth.oidc, clientSecret: v.PERISCOPE_OIDC_CLIENT_SECRET } };
  }

  const authMode = v.PERISCOPE_AUTH_MODE as 'oidc' | 'dev';
  const authFileProblem = (allowed: string): ConfigProblem => ({
    setting: 'PERISCOPE_AUTH_FILE',
    value: authFile,
    allowed,
  });
  if (authMode === 'oidc' && authFile === undefined) {
    problems.push(
      authFileProblem(
        'the path of an auth file with an oidc section (or PERISCOPE_AUTH_MODE=dev for local use)',
      ),
    );
  } else if (
    authMode === 'oidc' &&
    auth.oidc === undefined &&
    !problems.some((p) => p.setting.includes('oidc'))
  ) {
    problems.push(
      authFileProblem('an auth file with oidc.issuer and oidc.clientID (PERISCOPE_AUTH_MODE is oidc)'),
    );
  }
  if (authMode === 'dev') {
    // Dev users bypass login entirely, so they only ever serve a loopback listener.
    if (!LOOPBACK.test(v.PERISCOPE_LISTEN_ADDRESS)) {
      problems.push({
        setting: 'PERISCOPE_LISTEN_ADDRESS',
        value: v.PERISCOPE_LISTEN_ADDRESS,
        allowed:
          'a loopback address (127.0.0.1) while PERISCOPE_AUTH_MODE=dev; use oidc for anything reachable from a network',
      });
    }
    if (auth.devUsers.length === 0)
      problems.push(
        authFileProblem('an auth file with at least one dev.users entry (PERISCOPE_AUTH_MODE is dev)'),
      );
  }

  const authz = auth.authorization;
  if (
    authMode === 'oidc' &&
    authz.mode === 'shared' &&
    authz.allowedGroups.length === 0 &&
    !authz.allowAnyUser
  ) {
    // Shared mode acts as the server's own identity; without allowedGroups that is every account
    // the provider will sign in (contractors, test users, other tenants of a shared IdP).
    problems.push(
      authFileProblem(
        "an auth file that says who may sign in: authorization.mode is shared (every call runs as the server's " +
          'own identity) and authorization.allowedGroups is empty, so every account of the OpenID provider could. ' +
          'Fix: list the IdP groups allowed to sign in under authorization.allowedGroups, or use authorization.mode: tier, ' +
          'or set authorization.allowAnyUser: true to accept this on purpose',
      ),
    );
  }

  const podTemplate = parsePodTemplateEnv({
    resources: v.PERISCOPE_CLUSTER_SHELL_POD_RESOURCES,
    nodeSelector: v.PERISCOPE_CLUSTER_SHELL_POD_NODE_SELECTOR,
    tolerations: v.PERISCOPE_CLUSTER_SHELL_POD_TOLERATIONS,
    priorityClassName: v.PERISCOPE_CLUSTER_SHELL_POD_PRIORITY_CLASS_NAME,
    labels: v.PERISCOPE_CLUSTER_SHELL_POD_LABELS,
    annotations: v.PERISCOPE_CLUSTER_SHELL_POD_ANNOTATIONS,
    imagePullSecrets: v.PERISCOPE_CLUSTER_SHELL_POD_IMAGE_PULL_SECRETS,
  });
  problems.push(...podTemplate.problems);
  const clusterShell: ClusterShellSettings = {
    enabled: v.PERISCOPE_CLUSTER_SHELL_ENABLED,
    mode: v.PERISCOPE_CLUSTER_SHELL_MODE as ShellMode,
    modeByTier: modeByTier(v.PERISCOPE_CLUSTER_SHELL_MODE_BY_TIER),
    tiers: v.PERISCOPE_CLUSTER_SHELL_TIERS as TierName[],
    namespace: v.PERISCOPE_CLUSTER_SHELL_NAMESPACE,
    idleSeconds: v.PERISCOPE_CLUSTER_SHELL_IDLE_SECONDS,
    podStartTimeoutSeconds: v.PERISCOPE_CLUSTER_SHELL_POD_START_TIMEOUT_SECONDS,
    transcriptMaxBytes: v.PERISCOPE_CLUSTER_SHELL_TRANSCRIPT_MAX_BYTES,
    maxSessionsPerUser: v.PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER,
    maxSessionsTotal: v.PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_TOTAL,
    image: v.PERISCOPE_CLUSTER_SHELL_IMAGE,
    imagePullPolicy: v.PERISCOPE_CLUSTER_SHELL_IMAGE_PULL_POLICY as ClusterShellSettings['imagePullPolicy'],
    maxSessionSeconds: v.PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS,
    maxSessionWarnSeconds: v.PERISCOPE_CLUSTER_SHELL_MAX_SESSION_WARN_SECONDS,
    readinessSeconds: v.PERISCOPE_CLUSTER_SHELL_READINESS_SECONDS,
    pod: podTemplate.template,
  };
  if (clusterShell.enabled && auth.authorization.mode !== 'tier') {
    problems.push({
      setting: 'PERISCOPE_CLUSTER_SHELL_ENABLED',
      value: 'true',
      allowed:
        `authorization.mode: tier in the auth file (it is "${auth.authorization.mode}"). The cluster shell impersonates ` +
        'each operator narrowed to one tier, so it cannot run in shared or raw mode. Fix: set authorization.mode: tier and map ' +
        'IdP groups to tiers under authorization.groupTiers, or set PERISCOPE_CLUSTER_SHELL_ENABLED=false',
    });
  }
  const exec: ExecSettings = {
    idleSeconds: v.PERISCOPE_EXEC_IDLE_SECONDS,
    idleWarnSeconds: v.PERISCOPE_EXEC_IDLE_WARN_SECONDS,
    heartbeatSeconds: v.PERISCOPE_EXEC_HEARTBEAT_SECONDS,
    maxSessionsPerUser: v.PERISCOPE_EXEC_MAX_SESSIONS_PER_USER,
    maxSessionsTotal: v.PERISCOPE_EXEC_MAX_SESSIONS_TOTAL,
  };
  for (const [setting, idle] of [
    ['PERISCOPE_EXEC_IDLE_SECONDS', exec.idleSeconds],
    ['PERISCOPE_CLUSTER_SHELL_IDLE_SECONDS', clusterShell.idleSeconds],
  ] as const) {
    if (exec.idleWarnSeconds >= idle) {
      problems.push({
        setting: 'PERISCOPE_EXEC_IDLE_WARN_SECONDS',
        value: String(exec.idleWarnSeconds),
        allowed: `less than ${setting} (${idle})`,
      });
    }
  }
  for (const [i, c] of clusters.entries()) {
    const idle = c.clusterShell.idleSeconds;
    if (idle === undefined) continue;
    const setting = `${v.PERISCOPE_CLUSTERS_FILE ?? 'clusters file'}: clusters[${i}].clusterShell.idleSeconds`;
    if (exec.idleWarnSeconds >= idle)
      problems.push({
        setting,
        value: String(idle),
        allowed: `more than PERISCOPE_EXEC_IDLE_WARN_SECONDS (${exec.idleWarnSeconds})`,
      });
    if (idle > clusterShell.maxSessionSeconds)
      problems.push({
        setting,
        value: String(idle),
        allowed: `at most PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS (${clusterShell.maxSessionSeconds})`,
      });
  }
  if (clusterShell.maxSessionSeconds < clusterShell.idleSeconds) {
    problems.push({
      setting: 'PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS',
      value: String(clusterShell.maxSessionSeconds),
      allowed: `at least PERISCOPE_CLUSTER_SHELL_IDLE_SECONDS (${clusterShell.idleSeconds})`,
    });
  }
  if (clusterShell.maxSessionWarnSeconds >= clusterShell.maxSessionSeconds) {
    problems.push({
      setting: 'PERISCOPE_CLUSTER_SHELL_MAX_SESSION_WARN_SECONDS',
      value: String(clusterShell.maxSessionWarnSeconds),
      allowed: `less than PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS (${clusterShell.maxSessionSeconds}), or 0 for no warning`,
    });
  }

  if (
    v.PERISCOPE_METRICS_PORT !== 0 &&
    (v.PERISCOPE_METRICS_PORT === v.PERISCOPE_HTTP_PORT ||
      (clusters.some((c) => c.backend === 'agent') &&
        v.PERISCOPE_METRICS_PORT === v.PERISCOPE_AGENT_TUNNEL_PORT))
  ) {
    problems.push({
      setting: 'PERISCOPE_METRICS_PORT',
      value: String(v.PERISCOPE_METRICS_PORT),
      allowed: `a port other than PERISCOPE_HTTP_PORT (${v.PERISCOPE_HTTP_PORT}) and PERISCOPE_AGENT_TUNNEL_PORT (${v.PERISCOPE_AGENT_TUNNEL_PORT}), or 0 to turn the ops listener off`,
    });
  }
  const redis = redisSettings(v.PERISCOPE_REDIS_URL, problems);
  const postgres = postgresSettings(v.PERISCOPE_DATABASE_URL, problems);
  // Several replicas: a sign-in started on one finishes on another, its tokens rest in Redis.
  if (redis !== undefined && authMode === 'oidc' && v.PERISCOPE_SESSION_KEY === undefined)
    problems.push({
      setting: 'PERISCOPE_SESSION_KEY',
      allowed:
        'a key shared by every replica when PERISCOPE_REDIS_URL is set in oidc mode: 32 random bytes in base64 (openssl rand -base64 32), from a Kubernetes Secret',
    });
  // Several replicas forward requests to each other, signed with a key they all share.
  if (redis !== undefined && v.PERISCOPE_REPLICA_SECRET === undefined)
    problems.push({
      setting: 'PERISCOPE_REPLICA_SECRET',
      allowed:
        'a key shared by every replica when PERISCOPE_REDIS_URL is set (it signs the requests one replica forwards to another): at least 32 characters, e.g. openssl rand -base64 32, from a Kubernetes Secret',
    });
  if (problems.length > 0) throw new ConfigError('server', problems);

  const publicUrl = v.PERISCOPE_PUBLIC_URL.replace(/\/$/, '');
  return {
    http: {
      listenAddress: v.PERISCOPE_LISTEN_ADDRESS,
      port: v.PERISCOPE_HTTP_PORT,
      publicUrl,
      allowedOrigins: [...new Set([publicUrl, ...v.PERISCOPE_ALLOWED_ORIGINS])],
      metricsPort: v.PERISCOPE_METRICS_PORT,
    },
    logLevel: v.PERISCOPE_LOG_LEVEL as ServerConfig['logLevel'],
    heapGrowingPercent: v.PERISCOPE_HEAP_GROWING_PERCENT,
    dataDir: v.PERISCOPE_DATA_DIR,
    ...(v.PERISCOPE_WEB_DIR !== undefined ? { webDir: v.PERISCOPE_WEB_DIR } : {}),
    authMode,
    auth,
    clusters,
    clusterShell,
    protection: { ownNamespaces: v.PERISCOPE_PROTECTED_NAMESPACES, tierBindings: v.PERISCOPE_TIER_BINDINGS },
    exec,
    terminal: { stdinBytesPerSecond: v.PERISCOPE_TERMINAL_STDIN_BYTES_PER_SECOND },
    resume: { graceSeconds: v.PERISCOPE_RESUME_GRACE_SECONDS, bufferBytes: v.PERISCOPE_RESUME_BUFFER_BYTES },
    reaper: {
      intervalSeconds: v.PERISCOPE_REAPER_INTERVAL_SECONDS,
      graceSeconds: v.PERISCOPE_REAPER_GRACE_SECONDS,
    },
    audit: {
      retentionDays: v.PERISCOPE_AUDIT_RETENTION_DAYS,
      maxBytes: v.PERISCOPE_AUDIT_MAX_MB * 1024 * 1024,
      ...(postgres !== undefined ? { postgres } : {}),
    },
    recording: {
      mode: v.PERISCOPE_SESSION_RECORDING as RecordingMode,
      maxSessionBytes: v.PERISCOPE_RECORDING_MAX_SESSION_MB * 1024 * 1024,
      maxTotalBytes: v.PERISCOPE_RECORDING_MAX_TOTAL_MB * 1024 * 1024,
    },
    sharedState: {
      ...(redis !== undefined ? { redis } : {}),
      keyPrefix: v.PERISCOPE_REDIS_KEY_PREFIX,
      ...(v.PERISCOPE_REPLICA_ID !== undefined ? { replicaId: v.PERISCOPE_REPLICA_ID } : {}),
      ...(v.PERISCOPE_REPLICA_URL !== undefined
        ? { replicaUrl: v.PERISCOPE_REPLICA_URL.replace(/\/$/, '') }
        : {}),
      ...(v.PERISCOPE_REPLICA_SECRET !== undefined ? { replicaSecret: v.PERISCOPE_REPLICA_SECRET } : {}),
      ...(v.PERISCOPE_SESSION_KEY !== undefined ? { sessionSecret: v.PERISCOPE_SESSION_KEY } : {}),
    },
    agentTunnel: {
      address: v.PERISCOPE_AGENT_TUNNEL_ADDRESS,
      port: v.PERISCOPE_AGENT_TUNNEL_PORT,
      url: v.PERISCOPE_AGENT_TUNNEL_URL.replace(/\/$/, ''),
      sans: v.PERISCOPE_AGENT_TUNNEL_SANS,
      graceSeconds: v.PERISCOPE_AGENT_TUNNEL_GRACE_SECONDS,
      ...(v.PERISCOPE_AGENT_CA_SECRET !== undefined
        ? {
            caSecret: {
              namespace: v.PERISCOPE_AGENT_CA_SECRET.split('/')[0] ?? '',
              name: v.PERISCOPE_AGENT_CA_SECRET.split('/')[1] ?? '',
            },
          }
        : {}),
    },
  };
}

/** PERISCOPE_REDIS_URL split into the URL without its password, and the password (masked in logs). */
function redisSettings(
  raw: string | undefined,
  problems: ConfigProblem[],
): { url: string; password?: string } | undefined {
  if (raw === undefined) return undefined;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    problems.push({
      setting: 'PERISCOPE_REDIS_URL',
      value: '<redacted>',
      allowed: 'a redis:// or rediss:// URL such as redis://:password@redis:6379/0',
    });
    return undefined;
  }
  const password = u.password !== '' ? decodeURIComponent(u.password) : undefined;
  u.password = '';
  return { url: u.toString(), ...(password !== undefined ? { password } : {}) };
}

/** PERISCOPE_DATABASE_URL split into the URL without its password, and the password (masked in logs). */
function postgresSettings(
  raw: string | undefined,
  problems: ConfigProblem[],
): { url: string; password?: string } | undefined {
  if (raw === undefined) return undefined;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    problems.push({
      setting: 'PERISCOPE_DATABASE_URL',
      value: '<redacted>',
      allowed:
        'a postgres:// URL such as postgres://periscope:password@db:5432/periscope?sslmode=verify-full',
    });
    return undefined;
  }
  const password = u.password !== '' ? decodeURIComponent(u.password) : undefined;
  u.password = '';
  return { url: u.toString(), ...(password !== undefined ? { password } : {}) };
}

/** `read=kubectl` pairs (checked by the env spec's pattern) as a map; a later pair wins. */
function modeByTier(pairs: string[]): Partial<Record<TierName, ShellMode>> {
  return Object.fromEntries(pairs.map((p) => p.split('=') as [TierName, ShellMode]));
}

/** The configuration as it may be logged: secrets replaced by "<redacted>". */
export function configForLog(config: ServerConfig): unknown {
  return maskSecrets(config);
}
