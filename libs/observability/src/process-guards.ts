import { Counter, type Registry } from 'prom-client';

/** Where the guards write (a pino logger fits). */
export interface GuardLog {
  error(fields: object, message: string): void;
  fatal(fields: object, message: string): void;
}

export interface ProcessGuardOptions {
  log: GuardLog;
  /** counts unhandled rejections (`periscope_unhandled_rejections_total`) */
  registry?: Registry;
  /** how the process ends after an uncaught exception (tests replace it) */
  exit?: (code: number) => void;
  /** the process whose events are watched (tests pass an EventEmitter) */
  target?: Pick<NodeJS.Process, 'on' | 'off'>;
}

/** The error's message and stack, or a description of whatever was thrown or rejected. */
function describeError(reason: unknown): { err: string; stack?: string; type: string } {
  if (reason instanceof Error)
    return { err: reason.message, type: reason.name, ...(reason.stack ? { stack: reason.stack } : {}) };
  let text: string;
  try {
    text = typeof reason === 'string' ? reason : JSON.stringify(reason);
  } catch {
    text = String(reason);
  }
  return { err: (text || String(reason)).slice(0, 2000), type: typeof reason };
}

/**
 * The process-level policy of server and agent (installed by their `main.ts`):
 *
 * - an **unhandled promise rejection** is logged (error level, with the stack) and counted, and the
 *   process keeps serving: such a rejection ends one asynchronous chain, not the process's state,
 *   and one bad input (an agent's malformed hello once did this) must not take a whole fleet's
 *   server down — and, restarted, down again at the agent's next reconnect;
 * - an **uncaught exception** is logged (fatal, with the stack) and the process exits with code 1,
 *   as Node itself would: a synchronous throw that reached the event loop can leave state half
 *   changed, and Kubernetes restarts a clean process.
 *
 * Answers a function that removes the guards.
 */
export function installProcessGuards(opts: ProcessGuardOptions): () => void {
  const target = opts.target ?? process;
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  let counter: Counter | undefined;
  if (opts.registry) {
    const existing = opts.registry.getSingleMetric('periscope_unhandled_rejections_total');
    counter =
      (existing as Counter | undefined) ??
      new Counter({
        name: 'periscope_unhandled_rejections_total',
        help: 'Promise rejections no code handled (logged with their stack; the process keeps serving). Any is a bug: report it',
        registers: [opts.registry],
      });
  }
  const onRejection = (reason: unknown): void => {
    counter?.inc();
    try {
      opts.log.error(
        { event: 'unhandledRejection', ...describeError(reason) },
        'unhandled promise rejection; the process keeps serving (a bug: report this line)',
      );
    } catch {
      // a logger that throws must not turn this into an uncaught exception
    }
  };
  const onException = (err: unknown, origin: unknown): void => {
    try {
      opts.log.fatal(
        { event: 'uncaughtException', origin, ...describeError(err) },
        'uncaught exception; exiting (code 1) so that a clean process takes over',
      );
    } finally {
      exit(1);
    }
  };
  target.on('unhandledRejection', onRejection);
  target.on('uncaughtException', onException);
  return () => {
    target.off('unhandledRejection', onRejection);
    target.off('uncaughtException', onException);
  };
}
