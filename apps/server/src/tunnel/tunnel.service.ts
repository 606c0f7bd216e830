import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Metrics, Readiness } from '@periscope/observability';
import { PinoLogger } from 'nestjs-pino';

import { AgentCertificates } from '../agents/agent-certificates.service';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { AgentLinks } from './agent-links';
import { LogBudget } from './log-budget';
import { TunnelAdmission } from './tunnel-admission';
import { TunnelListener } from './tunnel-listener';
import { TunnelMetrics } from './tunnel-metrics';

/** The listener and the links of the tunnel, wired once from the configuration. */
export interface TunnelParts {
  listener: TunnelListener;
  links: AgentLinks;
}

export const TUNNEL_PARTS = Symbol('TUNNEL_PARTS');

/** Builds the tunnel's pieces, their metrics and logs (the TUNNEL_PARTS provider). */
export function buildTunnel(
  config: ServerConfig,
  certs: AgentCertificates,
  metrics: Metrics,
  pino: PinoLogger,
): TunnelParts {
  const log = new Logger('tunnel');
  const rejectLog = new LogBudget(10, 10_000);
  const tunnelLog = pino.logger.child({ component: 'tunnel' });
  const agentNames = new Set(certs.agentClusters());
  // The gauges read the links at scrape time, after they are made just below.
  const m = new TunnelMetrics(metrics.registry, () => links.all());
  const links = new AgentLinks({
    graceMs: config.agentTunnel.graceSeconds * 1000,
    maxPendingRequests: 1000,
    log: tunnelLog,
    maxSessionSeconds: config.clusterShell.maxSessionSeconds,
    retainBytes: config.resume.bufferBytes,
    identity: certs,
    // Renewal needs the current certificate, and makes the new one current (compare-and-set).
    signRenewal: (cluster, csr, from) => certs.renew(cluster, csr, from),
    onRequestDone: (op, seconds, outcome) => {
      m.rpcSeconds.observe({ op, outcome }, seconds);
    },
    onContended: () => {
      m.contended.inc();
    },
    onHandshakeFailed: () => {
      m.handshakesFailed.inc();
    },
    onMuxEvent: (cluster, e) => {
      if (e.event === 'stream_reset') {
        m.resets.inc({ reason: String(e.code) });
        log.log({ cluster, ...e }, 'tunnel stream closed');
      }
      if (e.event === 'frame_rejected') {
        m.framesRejected.inc();
        // A flood of bad frames must not become a flood of log lines: a few per cluster and
        // window, then how many more (the metric counts them all).
        const n = rejectLog.note(cluster);
        if (n.log) log.warn({ cluster, reason: e.reason.slice(0, 200) }, 'tunnel frame rejected');
        if (n.suppressed > 0)
          log.warn(
            { cluster, suppressed: n.suppressed },
            'more tunnel frames rejected; not logged one by one (periscope_tunnel_frames_rejected_total)',
          );
      }
    },
  });
  const listener = new TunnelListener({
    host: config.agentTunnel.address,
    port: config.agentTunnel.port,
    admission: new TunnelAdmission({
      isAgentCluster: (c) => agentNames.has(c),
      admissionsPerSecond: 50,
      admissionBurst: 100,
      identity: certs,
    }),
    log: tunnelLog,
    onRefused: (reason) => {
      m.refusals.inc({ reason });
    },
  });
  return { listener, links };
}

/**
 * The tunnel's life: ready once listening (when agent clusters exist), listening once the agent
 * certificates are loaded, closed at shutdown after the sessions that end over it (streams reset
 * with the reason, then the listener). Identity changes reach the links from here on.
 */
@Injectable()
export class TunnelService implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger('tunnel');

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly certs: AgentCertificates,
    private readonly links: AgentLinks,
    private readonly listener: TunnelListener,
    readiness: Readiness,
  ) {
    readiness.register('agent-tunnel', () =>
      this.certs.agentClusters().length === 0 || this.listener.isListening
        ? undefined
        : 'tunnel listener not started',
    );
    certs.connectThrough(links);
  }

  async onModuleInit(): Promise<void> {
    // Nest's default adapter would put the agent namespace on the public HTTP port.
    if (!this.listener.io)
      throw new Error(
        'the agent gateway is not on the tunnel listener; the application needs app.useWebSocketAdapter(TunnelIoAdapter.of(app)) (createServerApp does it)',
      );
    if (this.certs.agentClusters().length === 0) return;
    await this.listener.listen(await this.certs.tunnelTls());
    const t = this.config.agentTunnel;
    this.log.log(`agent tunnel listening on ${t.address}:${t.port}`);
  }

  async onApplicationShutdown(): Promise<void> {
    this.links.closeAll('server shutting down');
    await this.listener.close();
  }
}
