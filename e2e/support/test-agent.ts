import 'reflect-metadata';

import { createAgentApp, type AgentApp } from '../../apps/agent/src/agent-app';
import { loadAgentConfig } from '../../apps/agent/src/config/agent-config';

/**
 * The in-process agent of the integration specs: a registration token minted by a signed-in
 * admin, then the real agent app registering with it and opening its tunnel.
 */

/**
 * Mints a single-use registration token for `cluster` on the server at `base` (POST
 * /api/agents/tokens with `headers`: the cookie of a signed-in admin, and Origin where needed).
 */
export async function mintAgentToken(
  base: string,
  headers: Readonly<Record<string, string>>,
  cluster: string,
): Promise<string> {
  const minted = await fetch(`${base}/api/agents/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ cluster }),
  });
  if (minted.status !== 201)
    throw new Error(
      `minting a registration token for ${cluster}: HTTP ${minted.status} ${await minted.text()}`,
    );
  return ((await minted.json()) as { token: string }).token;
}

export interface TestAgentOptions {
  /** `https://127.0.0.1:<port>`: the server's agent tunnel listener. */
  serverUrl: string;
  /** The server's HTTP base URL (registration). */
  registrationUrl: string;
  cluster: string;
  token: string;
  /** The agent's namespace, also its cluster-shell namespace. */
  namespace: string;
}

/**
 * Starts the agent of `cluster` in this process (cluster shell on, log level warn, health port any
 * free one on 127.0.0.1). It loads its kubeconfig the default way: set KUBECONFIG first.
 */
export async function startTestAgent(opts: TestAgentOptions): Promise<AgentApp> {
  const agent = await createAgentApp(
    loadAgentConfig({
      PERISCOPE_SERVER_URL: opts.serverUrl,
      PERISCOPE_REGISTRATION_URL: opts.registrationUrl,
      PERISCOPE_CLUSTER_NAME: opts.cluster,
      PERISCOPE_REGISTRATION_TOKEN: opts.token,
      PERISCOPE_AGENT_NAMESPACE: opts.namespace,
      PERISCOPE_AGENT_LISTEN_ADDRESS: '127.0.0.1',
      PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
      PERISCOPE_CLUSTER_SHELL_NAMESPACE: opts.namespace,
      PERISCOPE_LOG_LEVEL: 'warn',
    }),
  );
  try {
    await agent.listen(0, '127.0.0.1');
  } catch (err) {
    await agent.close().catch(() => undefined);
    throw err;
  }
  return agent;
}
