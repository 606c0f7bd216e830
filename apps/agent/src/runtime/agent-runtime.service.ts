import { DirectGateway, LeanKubeConfig } from '@periscope/cluster-ops/dist/lean';
import { RESET_CODE, type MuxStream, type StreamOpen } from '@periscope/protocol';
import type { Logger } from 'pino';

import type { AgentConfig } from '../config/agent-config';
import { registerClusterOps } from '../cluster/cluster-op-handlers';
import { ShellSweeper } from '../cluster/shell-sweeper';
import { serveExecStream } from '../exec/tunnel-exec';
import { certValidity } from '../identity/agent-keys';
import { AgentIdentity } from '../identity/agent-identity';
import { RegistrationError } from '../identity/registration';
import { rawSecretApi, SecretStateStore } from '../identity/state-store';
import type { Readiness } from '../observability/agent-observability';
import { TunnelClient } from '../tunnel/tunnel-client';
import { APP_VERSION } from '../version';

/** Registers (once), keeps the tunnel up and renews the certificate, for the agent's lifetime. */
export class AgentRuntime {
  identity: AgentIdentity | undefined;
  tunnel: TunnelClient | undefined;
  /** every cluster call of the agent (tunnel operations and exec streams) goes through it */
  private gateway: DirectGateway | undefined;
  private sweeper: ShellSweeper | undefined;

  constructor(
    private readonly config: AgentConfig,
    private readonly log: Logger,
    readiness: Readiness,
  ) {
    readiness.register('tunnel', () =>
      this.tunnel?.connected === true ? undefined : 'tunnel not connected',
    );
  }

  /** Loads or obtains the identity, then starts the tunnel, the sweeper and renewal. */
  async start(): Promise<void> {
    // Not @kubernetes/client-node: the agent's steady-state calls are raw (see kube-config.ts).
    const kc = LeanKubeConfig.loadFromDefault();
    const store = new SecretStateStore(rawSecretApi(kc), this.config.namespace, this.config.stateSecretName);
    const logger = this.log.child({ component: 'identity', cluster: this.config.clusterName });
    this.identity = new AgentIdentity({
      cluster: this.config.clusterName,
      registrationUrl: this.config.registrationUrl,
      ...(this.config.registrationToken !== undefined
        ? { registrationToken: this.config.registrationToken }
        : {}),
      ...(this.config.serverCaHash !== undefined ? { serverCaHash: this.config.serverCaHash } : {}),
      store,
      log: logger,
    });
    const identity = this.identity;
    try {
      await identity.ensure();
    } catch (err) {
      const permanent = err instanceof RegistrationError && err.permanent;
      logger.error({ err: (err as Error).message, permanent }, 'agent cannot obtain its identity');
      throw err;
    }
    const gateway = new DirectGateway(kc, {
      preferClusterInfo: true,
      log: (fields, message) => {
        this.log.warn({ component: 'cluster-ops', ...fields }, message);
      },
    });
    this.gateway = gateway;
    const tunnel = new TunnelClient({
      serverUrl: this.config.serverUrl,
      cluster: this.config.clusterName,
      identity: () => ({
        certPem: identity.state.certPem,
        keyPem: identity.state.keyPem,
        caPem: identity.state.caPem,
      }),
      graceMs: 120_000,
      rehomeBufferBytes: this.config.rehomeBufferBytes,
      giveUpAfterMs: 10 * 60_000,
      onGiveUp: () => process.exit(70),
      onOpen: (stream, open) => {
        this.onStreamOpen(stream, open);
      },
      hello: () => ({
        cluster: this.config.clusterName,
        version: APP_VERSION,
        clusterShell: this.config.clusterShell,
        certNotAfter: certValidity(identity.state.certPem).notAfter.toISOString(),
        namespace: this.config.namespace,
        protectedNamespaces: this.config.protectedNamespaces,
      }),
      log: this.log.child({ component: 'tunnel', cluster: this.config.clusterName }),
    });
    this.tunnel = tunnel;
    registerClusterOps(tunnel.rpc, gateway, this.config.clusterShell);
    tunnel.start();
    if (this.config.clusterShell.enabled) {
      // Expired sessions' objects go even while the server is unreachable (and at start).
      const sweep = this.config.sweep;
      this.sweeper = new ShellSweeper({
        gateway,
        namespace: this.config.clusterShell.namespace,
        connected: () => tunnel.connected,
        maxSessionSeconds: () => tunnel.serverMaxSessionSeconds ?? sweep.maxSessionSeconds,
        graceSeconds: sweep.graceSeconds,
        intervalSeconds: sweep.intervalSeconds,
        log: this.log.child({ component: 'sweep', cluster: this.config.clusterName }),
      });
      this.sweeper.start();
    }
    identity.scheduleRenewal((csr) => tunnel.renew(csr));
  }

  private onStreamOpen(stream: MuxStream, open: StreamOpen): void {
    const tunnel = this.tunnel;
    const gateway = this.gateway;
    if (!gateway) {
      stream.reset(RESET_CODE.openFailed, 'the agent is still starting');
      return;
    }
    void serveExecStream(
      gateway,
      stream,
      open,
      this.log.child({ component: 'exec' }),
      tunnel ? { cluster: this.config.clusterName, ring: tunnel.rpc.ring } : undefined,
    );
  }

  stop(): void {
    this.sweeper?.stop();
    this.identity?.stop();
    this.tunnel?.stop();
  }
}
