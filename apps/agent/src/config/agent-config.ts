import { ConfigError, maskSecrets, parseEnv } from '@periscope/config';

import { AGENT_ENV } from './agent-env';

export interface AgentConfig {
  serverUrl: string;
  registrationUrl: string;
  clusterName: string;
  registrationToken?: string;
  serverCaHash?: string;
  namespace: string;
  stateSecretName: string;
  health: { listenAddress: string; port: number };
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /** V8 old-generation growth between full GCs, % of the live heap; 0 = V8's default */
  heapGrowingPercent: number;
  clusterShell: { enabled: boolean; tiers: string[]; namespace: string };
  /**
   * Namespaces only the admin tier may touch: the agent's own, the shell namespace while the
   * shell is on, and PERISCOPE_PROTECTED_NAMESPACES. Reported to the server in `hello`.
   */
  protectedNamespaces: string[];
  /** run the tier binder (PERISCOPE_TIER_BINDINGS) */
  tierBindings: boolean;
  /**
   * The agent's own sweep of expired shell objects while the server is unreachable: objects
   * older than `maxSessionSeconds` (the server's value once announced) plus `graceSeconds`.
   */
  sweep: { intervalSeconds: number; graceSeconds: number; maxSessionSeconds: number };
  /** output kept over all streams for re-homing a session to another server replica (0: off) */
  rehomeBufferBytes: number;
}

const LOOPBACK_HOST = /^(127(\.\d{1,3}){3}|\[::1\]|localhost)$/;

/** Why a registration URL is unsafe (plain http to a host other than loopback), or undefined. */
function insecureRegistrationUrl(url: string | undefined): string | undefined {
  if (url === undefined || !url.startsWith('http://')) return undefined;
  let host: string;
  try {
    host = new URL(url).hostname.toLowerCase();
  } catch {
    return 'not a URL';
  }
  return LOOPBACK_HOST.test(host) ? undefined : `http:// to ${host}`;
}

/** Validates the agent's environment once; throws one ConfigError listing every problem. */
export function loadAgentConfig(env: Readonly<Record<string, string | undefined>>): AgentConfig {
  const { values: v, problems } = parseEnv(AGENT_ENV, env);
  if (v.PERISCOPE_SERVER_URL === undefined)
    problems.push({
      setting: 'PERISCOPE_SERVER_URL',
      allowed: 'the https:// URL of the server tunnel listener (required)',
    });
  if (v.PERISCOPE_CLUSTER_NAME === undefined)
    problems.push({
      setting: 'PERISCOPE_CLUSTER_NAME',
      allowed: "this cluster's name as registered on the server (required)",
    });
  const insecure = insecureRegistrationUrl(v.PERISCOPE_REGISTRATION_URL);
  if (insecure !== undefined)
    problems.push({
      setting: 'PERISCOPE_REGISTRATION_URL',
      value: v.PERISCOPE_REGISTRATION_URL,
      allowed: `an https:// URL: the registration token and the signed certificate must not cross the network in clear (${insecure}). Plain http is accepted only for a loopback host (127.0.0.1, ::1, localhost)`,
    });
  if (problems.length > 0) throw new ConfigError('agent', problems);
  const serverUrl = v.PERISCOPE_SERVER_URL as string;
  return {
    serverUrl,
    registrationUrl: v.PERISCOPE_REGISTRATION_URL ?? serverUrl,
    clusterName: v.PERISCOPE_CLUSTER_NAME as string,
    ...(v.PERISCOPE_REGISTRATION_TOKEN !== undefined
      ? { registrationToken: v.PERISCOPE_REGISTRATION_TOKEN }
      : {}),
    ...(v.PERISCOPE_SERVER_CA_HASH !== undefined ? { serverCaHash: v.PERISCOPE_SERVER_CA_HASH } : {}),
    namespace: v.PERISCOPE_AGENT_NAMESPACE,
    stateSecretName: v.PERISCOPE_AGENT_SECRET_NAME,
    health: { listenAddress: v.PERISCOPE_AGENT_LISTEN_ADDRESS, port: v.PERISCOPE_AGENT_HEALTH_PORT },
    logLevel: v.PERISCOPE_LOG_LEVEL as AgentConfig['logLevel'],
    heapGrowingPercent: v.PERISCOPE_HEAP_GROWING_PERCENT,
    clusterShell: {
      enabled: v.PERISCOPE_CLUSTER_SHELL_ENABLED,
      tiers: v.PERISCOPE_CLUSTER_SHELL_TIERS,
      namespace: v.PERISCOPE_CLUSTER_SHELL_NAMESPACE,
    },
    protectedNamespaces: [
      ...new Set([
        v.PERISCOPE_AGENT_NAMESPACE,
        ...(v.PERISCOPE_CLUSTER_SHELL_ENABLED ? [v.PERISCOPE_CLUSTER_SHELL_NAMESPACE] : []),
        ...v.PERISCOPE_PROTECTED_NAMESPACES,
      ]),
    ],
    tierBindings: v.PERISCOPE_TIER_BINDINGS,
    sweep: {
      intervalSeconds: v.PERISCOPE_REAPER_INTERVAL_SECONDS,
      graceSeconds: v.PERISCOPE_REAPER_GRACE_SECONDS,
      maxSessionSeconds: v.PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS,
    },
    rehomeBufferBytes: v.PERISCOPE_AGENT_REHOME_BUFFER_BYTES,
  };
}

/** The only place in the agent that reads process.env. */
export function loadAgentConfigFromProcess(): AgentConfig {
  return loadAgentConfig(process.env);
}

export function agentConfigForLog(config: AgentConfig): unknown {
  return maskSecrets(config);
}
