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
  };
}

export function agentConfigForLog(config: AgentConfig): unknown {
  return maskSecrets(config);
}
