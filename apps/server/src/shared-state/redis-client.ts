import type { Redis } from 'ioredis';

/** How long start-up waits for Redis before it gives up with the reason. */
export const REDIS_CONNECT_DEADLINE_MS = 10_000;
/** A command that gets no answer in this time fails (an admission answers 503, a renewal retries). */
export const REDIS_COMMAND_TIMEOUT_MS = 5_000;

export interface RedisSettings {
  /** without its password (see server-config.ts) */
  url: string;
  password?: string;
}

/** The URL as it may be logged and shown in errors: never a password. */
export function redactedRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString();
  } catch {
    return '<unparsable Redis URL>';
  }
}

/**
 * A Redis client that does not connect yet. Commands fail fast while Redis is away (no offline
 * queue that would hold admissions for minutes); the client reconnects on its own, backing off
 * up to 2 s between attempts.
 */
export function redisClient(s: RedisSettings): Redis {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only with Redis (≈ 2 MiB heap)
  const { Redis: RedisClient } = require('ioredis') as typeof import('ioredis');
  return new RedisClient(s.url, {
    ...(s.password !== undefined ? { password: s.password } : {}),
    lazyConnect: true,
    connectTimeout: REDIS_CONNECT_DEADLINE_MS,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    retryStrategy: (attempt) => Math.min(100 * attempt, 2_000),
    connectionName: 'periscope-server',
  });
}

/**
 * Connects and checks the server answers (PING) within `deadlineMs`, or throws saying where it
 * tried (without the password), why, and what to check.
 */
export async function connectRedis(
  redis: Redis,
  url: string,
  deadlineMs = REDIS_CONNECT_DEADLINE_MS,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`no answer within ${deadlineMs / 1000} s`));
    }, deadlineMs);
  });
  // The outcome is this promise's; the client's error events meanwhile are not printed raw.
  const quiet = (): void => undefined;
  redis.on('error', quiet);
  try {
    await Promise.race([
      (async () => {
        await redis.connect();
        await redis.ping();
      })(),
      deadline,
    ]);
  } catch (err) {
    redis.disconnect(false);
    throw new Error(
      `could not reach Redis at ${redactedRedisUrl(url)} (PERISCOPE_REDIS_URL): ${(err as Error).message}. ` +
        'Check that Redis runs and is reachable from the server, the URL (host, port, database, rediss:// for TLS) and the password; ' +
        'or unset PERISCOPE_REDIS_URL to keep the state in memory (one replica only)',
      { cause: err },
    );
  } finally {
    clearTimeout(timer);
    redis.off('error', quiet);
  }
}

/** QUIT within `deadlineMs` (pending replies are read first), else the connection is dropped. */
export async function closeRedis(redis: Redis, deadlineMs = 2_000): Promise<void> {
  if (redis.status === 'end') return;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.quit(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, deadlineMs);
      }),
    ]);
  } catch {
    // already closing or closed
  } finally {
    clearTimeout(timer);
    redis.disconnect(false);
  }
}
