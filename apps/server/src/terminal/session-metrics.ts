import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

import type { TerminalSession } from './terminal-session';

/** Prometheus metrics of terminal sessions (cluster shell and pod exec). */
export class SessionMetrics {
  readonly closed: Counter<'kind' | 'reason'>;
  readonly duration: Histogram<'kind'>;
  readonly resumes: Counter<'kind' | 'outcome'>;

  constructor(registry: Registry, sessions: () => Iterable<TerminalSession>) {
    new Gauge({
      name: 'periscope_terminal_sessions',
      help: 'Live terminal sessions by kind and state (starting, attached, detached = waiting for a resume)',
      labelNames: ['kind', 'state'],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of sessions()) this.inc({ kind: s.info.kind, state: s.state });
      },
    });
    this.closed = new Counter({
      name: 'periscope_terminal_sessions_closed_total',
      help: 'Terminal sessions ended, by kind and close reason',
      labelNames: ['kind', 'reason'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'periscope_terminal_session_seconds',
      help: 'Length of ended terminal sessions',
      labelNames: ['kind'],
      buckets: [1, 10, 60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600],
      registers: [registry],
    });
    this.resumes = new Counter({
      name: 'periscope_terminal_resumes_total',
      help: 'Attempts to resume a session after a disconnect, by outcome (resumed, gone, refused: the tier changed)',
      labelNames: ['kind', 'outcome'],
      registers: [registry],
    });
  }
}
