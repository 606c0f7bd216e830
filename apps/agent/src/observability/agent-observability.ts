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

/** The agent's readiness checks: the library's, without NestJS (false once `shutdown()` ran). */
export {
  ReadinessChecks as Readiness,
  type ReadinessCheck,
} from '@periscope/observability/dist/readiness-checks';
