import { pino, type Logger, type LoggerOptions } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';

/**
 * The agent's logs, metrics and readiness without NestJS: the same pino options, Prometheus
 * registry and readiness checks as `@periscope/observability`'s `ObservabilityModule` (which the
 * server keeps), as plain classes. Importing that library's index would load NestJS and Express
 * (≈ 9 MiB of heap), so the agent has these few lines of its own; `agent-observability.spec.ts`
 * holds them to the library's values.
 */

/** Headers and fields that must never reach a log line (`REDACTED_LOG_PATHS` of the library). */
export const AGENT_REDACTED_LOG_PATHS = [
  'req.headers.cookie',
  'req.headers.authorization',
  'req.headers["sec-websocket-protocol"]',
  'res.headers["set-cookie"]',
  '*.token',
  '*.password',
  '*.clientSecret',
];

/** The paths probes and scrapers call; their requests are not logged. */
export const PROBE_PATHS = ['/healthz', '/readyz', '/metrics'];

/** pino options of every agent log line, the request lines included (as the library's). */
export function agentLogOptions(level: string): LoggerOptions & {
  autoLogging: { ignore: (req: { url?: string }) => boolean };
} {
  return {
    level,
    base: { service: 'periscope-agent' },
    redact: { paths: AGENT_REDACTED_LOG_PATHS, censor: '<redacted>' },
    autoLogging: { ignore: (req) => PROBE_PATHS.includes(req.url ?? '') },
    // Query strings can carry one-time tickets; log the path only.
    serializers: {
      req: (req: { method?: string; url?: string; id?: unknown }) => ({
        id: req.id,
        method: req.method,
        path: (req.url ?? '').split('?')[0],
      }),
    },
  };
}

/**
 * The agent's logger: JSON lines on stdout, written asynchronously (pino's default), or to
 * `destination` (tests). `end` writes out what is buffered and closes stdout's stream, for the
 * last moment before the process ends by a signal, when no exit hook would (at most `waitMs`).
 */
export function createAgentLogger(
  level: string,
  destination?: pino.DestinationStream,
): { log: Logger; end: (waitMs?: number) => Promise<void> } {
  const { autoLogging: _ignored, ...options } = agentLogOptions(level);
  if (destination) return { log: pino(options, destination), end: () => Promise.resolve() };
  const stdout = pino.destination({ dest: 1, sync: false });
  return {
    log: pino(options, stdout),
    end: (waitMs = 1000) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        timer.unref();
        stdout.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        stdout.end();
      }),
  };
}

/** One Prometheus registry per agent instance (tests may start several in one process). */
export class Metrics {
  readonly registry = new Registry();

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'periscope_' });
  }
}

export type ReadinessCheck = () => Promise<string | undefined> | string | undefined;

/**
 * Named readiness checks; a check returns undefined when healthy, or a short reason. Readiness
 * turns false as soon as shutdown begins (`shutdown()`), so probes stop routing to us first.
 */
export class Readiness {
  private readonly checks = new Map<string, ReadinessCheck>();
  private shuttingDown = false;

  register(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  shutdown(): void {
    this.shuttingDown = true;
  }

  async evaluate(): Promise<{ ready: boolean; checks: Record<string, string> }> {
    const results: Record<string, string> = {};
    if (this.shuttingDown) results['shutdown'] = 'shutting down';
    for (const [name, check] of this.checks) {
      try {
        results[name] = (await check()) ?? 'ok';
      } catch (err) {
        results[name] = (err as Error).message;
      }
    }
    return { ready: Object.values(results).every((r) => r === 'ok'), checks: results };
  }
}
