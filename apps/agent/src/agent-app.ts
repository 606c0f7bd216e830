import type { DestinationStream, Logger } from 'pino';

import { agentConfigForLog, type AgentConfig } from './config/agent-config';
import { createAgentLogger, Metrics, Readiness } from './observability/agent-observability';
import { HealthServer } from './observability/health-server';
import { TierBinderService } from './rbac/tier-binder.service';
import { AgentRuntime } from './runtime/agent-runtime.service';

export interface AgentAppOptions {
  /** false: the HTTP surface alone, without registering or dialling the server (tests) */
  runtime?: boolean;
  /** where log lines go (tests); stdout otherwise */
  logDestination?: DestinationStream;
}

/**
 * The agent, wired with plain constructors (no NestJS, no Express: they cost ≈ 9 MiB of heap on
 * every managed cluster for three GET routes; docs/benchmarks.md, "A lean agent"). Start-up and
 * shutdown run in the order the NestJS app ran them: `listen` starts the runtime and the tier
 * binder (together), then binds the health listener; `close` turns readiness false, closes the
 * listener, then stops the runtime and the tier binder.
 */
export class AgentApp {
  readonly log: Logger;
  readonly metrics = new Metrics();
  readonly readiness = new Readiness();
  readonly runtime: AgentRuntime | undefined;
  readonly tierBinder: TierBinderService | undefined;
  private readonly health: HealthServer;
  private url: string | undefined;
  /** Writes out and closes the log's stdout stream: only right before the process ends by a signal. */
  readonly endLog: () => Promise<void>;

  constructor(config: AgentConfig, opts: AgentAppOptions = {}) {
    const { log, end } = createAgentLogger(config.logLevel, opts.logDestination);
    this.log = log;
    this.endLog = end;
    this.health = new HealthServer(this.readiness, this.metrics, config.logLevel, opts.logDestination);
    if (opts.runtime !== false) {
      this.runtime = new AgentRuntime(config, this.log, this.readiness);
      this.tierBinder = new TierBinderService(config, this.metrics, this.log);
    }
    this.log.info({ config: agentConfigForLog(config) }, 'effective configuration');
  }

  /**
   * Registers or loads the identity and starts the tunnel (and the tier binder, if enabled), then
   * binds `/healthz`, `/readyz` and `/metrics`; answers the listener's URL. Rejects when the agent
   * cannot start (its caller exits).
   */
  async listen(port: number, host: string): Promise<string> {
    this.tierBinder?.start();
    await this.runtime?.start();
    const url = await this.health.listen(port, host);
    this.url = url;
    this.log.info({ url }, 'agent started; /healthz, /readyz and /metrics are served');
    return url;
  }

  /** The listener's base URL (`http://host:port`), once `listen` has bound it. */
  getUrl(): Promise<string> {
    return this.url === undefined
      ? Promise.reject(new Error('the agent is not listening yet: call listen() first'))
      : Promise.resolve(this.url);
  }

  /** Readiness false, the listener closed (requests in flight answered), then everything stopped. */
  async close(): Promise<void> {
    this.readiness.shutdown();
    await this.health.close();
    this.runtime?.stop();
    await this.tierBinder?.stop();
  }
}

/** Builds the agent (not started, not listening); used by main and by tests. */
export function createAgentApp(config: AgentConfig, opts: AgentAppOptions = {}): Promise<AgentApp> {
  return Promise.resolve(new AgentApp(config, opts));
}

/** The signals NestJS's `enableShutdownHooks()` handled for the agent; kept as they were. */
export const SHUTDOWN_SIGNALS = [
  'SIGHUP',
  'SIGINT',
  'SIGQUIT',
  'SIGILL',
  'SIGTRAP',
  'SIGABRT',
  'SIGBUS',
  'SIGFPE',
  'SIGSEGV',
  'SIGUSR2',
  'SIGTERM',
] as const;

/** Longest a graceful shutdown may take before the process exits anyway (the pod allows 30 s). */
export const SHUTDOWN_DEADLINE_MS = 20_000;

export interface ShutdownOptions {
  /** the process whose signals are watched (tests pass an EventEmitter) */
  target?: Pick<NodeJS.Process, 'on' | 'off'>;
  /** re-raises the signal once closed, so the process ends as the signal's default would */
  kill?: (signal: NodeJS.Signals) => void;
  exit?: (code: number) => void;
  deadlineMs?: number;
}

/**
 * On the first shutdown signal: `app.close()`, then the same signal again with the handlers
 * removed (after the log is flushed), so the process ends by that signal (exit status 128 + n), as
 * under NestJS. A second
 * signal while closing is ignored; a close that fails or takes longer than the deadline is logged
 * and the process exits with 1. Answers a function that removes the handlers.
 */
export function handleShutdownSignals(
  app: Pick<AgentApp, 'close' | 'log' | 'endLog'>,
  opts: ShutdownOptions = {},
): () => void {
  const target = opts.target ?? process;
  const kill = opts.kill ?? ((signal: NodeJS.Signals) => process.kill(process.pid, signal));
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  const deadlineMs = opts.deadlineMs ?? SHUTDOWN_DEADLINE_MS;
  let received = false;
  const remove = (): void => {
    for (const s of SHUTDOWN_SIGNALS) target.off(s, onSignal);
  };
  function onSignal(signal: NodeJS.Signals): void {
    if (received) return;
    received = true;
    app.log.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      app.log.error({ signal, deadlineMs }, 'shutdown took longer than its deadline; exiting');
      exit(1);
    }, deadlineMs);
    timer.unref();
    app
      .close()
      .then(() => app.endLog())
      .then(
        () => {
          clearTimeout(timer);
          remove();
          kill(signal);
        },
        (err: unknown) => {
          clearTimeout(timer);
          app.log.error(
            { signal, err: err instanceof Error ? (err.stack ?? err.message) : String(err) },
            'error during shutdown',
          );
          exit(1);
        },
      );
  }
  for (const s of SHUTDOWN_SIGNALS) target.on(s, onSignal);
  return remove;
}
