import type { Redis } from 'ioredis';

export type ScriptCall = (...keysThenArgs: (string | number)[]) => Promise<unknown>;

/**
 * A Lua script as a command of `redis` (sent once, then run by its SHA: ioredis falls back to
 * EVAL when Redis does not know it, after a restart).
 */
export function luaScript(redis: Redis, name: string, numberOfKeys: number, lua: string): ScriptCall {
  const commands = redis as unknown as Record<string, ScriptCall | undefined>;
  if (commands[name] === undefined) redis.defineCommand(name, { numberOfKeys, lua });
  const fn = commands[name];
  if (fn === undefined) throw new Error(`Redis script ${name} was not defined`);
  return (...keysThenArgs) => fn.apply(redis, keysThenArgs);
}

/** Redis's own clock in ms (one clock for every replica: no skew between them). */
export const LUA_NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * Runs `fn` for at most `limit` outstanding operations, tracked so shutdown can wait for them
 * (release and renewal calls are fire-and-forget for their callers).
 */
export class PendingOps {
  private readonly ops = new Set<Promise<unknown>>();

  track<T>(p: Promise<T>): Promise<T> {
    this.ops.add(p);
    const done = (): void => {
      this.ops.delete(p);
    };
    p.then(done, done);
    return p;
  }

  get size(): number {
    return this.ops.size;
  }

  /** Waits for every outstanding operation, at most `deadlineMs`. */
  async drain(deadlineMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.ops]),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, deadlineMs);
      }),
    ]);
    clearTimeout(timer);
  }
}

/** The minimal logger the adapters use (pino's). */
export interface StateLog {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
}
