import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

import type { AgentLink } from './agent-link';

/** Prometheus metrics of the agent tunnel; gauges are read from the live links at scrape time. */
export class TunnelMetrics {
  readonly rpcSeconds: Histogram<'op' | 'outcome'>;
  readonly resets: Counter<'reason'>;
  readonly refusals: Counter<'reason'>;
  readonly contended: Counter;
  readonly handshakesFailed: Counter;
  readonly framesRejected: Counter;

  constructor(registry: Registry, allLinks: () => Iterable<AgentLink>) {
    this.rpcSeconds = new Histogram({
      name: 'periscope_tunnel_request_seconds',
      help: 'Control-plane request latency through the agent tunnel, by operation and outcome',
      labelNames: ['op', 'outcome'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: [registry],
    });
    this.resets = new Counter({
      name: 'periscope_tunnel_stream_resets_total',
      help: 'Tunnel streams ended by a reset, by reason code',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.refusals = new Counter({
      name: 'periscope_tunnel_refused_connections_total',
      help: 'Agent connections refused at admission, by reason (bad_chain, not_current, revoked, unknown_cluster, …)',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.contended = new Counter({
      name: 'periscope_tunnel_contended_connections_total',
      help: 'Agent connections that replaced a connection of the same cluster still up (two agents with one identity?)',
      registers: [registry],
    });
    this.handshakesFailed = new Counter({
      name: 'periscope_tunnel_handshakes_failed_total',
      help: 'Agent connections dropped at their handshake (a hello of the wrong shape, no answer, a bad resume); a healthy connection of the same cluster stays',
      registers: [registry],
    });
    this.framesRejected = new Counter({
      name: 'periscope_tunnel_frames_rejected_total',
      help: 'Tunnel frames from agents dropped as malformed or against the flow-control contract (the stream concerned is reset)',
      registers: [registry],
    });
    const links = (): AgentLink[] => [...allLinks()];
    new Gauge({
      name: 'periscope_tunnel_connected_agents',
      help: 'Agents with a live tunnel connection',
      registers: [registry],
      collect() {
        this.set(links().filter((l) => l.connected).length);
      },
    });
    new Gauge({
      name: 'periscope_tunnel_open_streams',
      help: 'Open streams over all agent tunnels',
      registers: [registry],
      collect() {
        this.set(links().reduce((n, l) => n + l.mux.size, 0));
      },
    });
    new Gauge({
      name: 'periscope_tunnel_pending_requests',
      help: 'Control-plane requests waiting for an agent answer',
      registers: [registry],
      collect() {
        this.set(links().reduce((n, l) => n + l.pendingRequests, 0));
      },
    });
    const bytes = (dir: 'in' | 'out'): void => {
      new Gauge({
        name: `periscope_tunnel_stream_bytes_${dir}`,
        help: `Bytes ${dir === 'in' ? 'received from' : 'sent to'} agents on currently open streams`,
        registers: [registry],
        collect() {
          this.set(
            links().reduce(
              (n, l) =>
                n + l.mux.allStreams().reduce((m, s) => m + (dir === 'in' ? s.bytesIn : s.bytesOut), 0),
              0,
            ),
          );
        },
      });
    };
    bytes('in');
    bytes('out');
  }
}
