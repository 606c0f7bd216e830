import type { Pool, PoolClient } from 'pg';

import { migrate } from './postgres-migrations';

/**
 * `url` without its password (`user:***@`), for logs and error messages.
 */
export function redactDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    for (const k of [...u.searchParams.keys()]) if (/pass|secret|key/i.test(k)) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return '<an unparsable database URL>';
  }
}

export interface MigratedPoolOptions {
  /** Errors of idle pooled connections (the database restarted, a network cut); never thrown. */
  onError?: (err: Error) => void;
  /** Connections in the pool. */
  maxConnections: number;
  /** Deadline of one connection attempt (default 10 s). */
  connectTimeoutMs?: number;
  /** Deadline of one statement, server side (default 60 s). */
  statementTimeoutMs?: number;
  /** `application_name` of the pool's connections. */
  applicationName: string;
  /** What the database holds, for error messages: "audit", "recordings". */
  what: string;
}

/**
 * Opens a pool on `url`, connects once and migrates the schema (once across replicas): the pool
 * and the migration versions applied (empty: the schema was current). A failed connection or
 * migration ends the pool and throws an error naming the (redacted) URL. `pg` is loaded here,
 * only when a store uses PostgreSQL (≈ 2.6 MiB heap).
 */
export async function openMigratedPool(
  url: string,
  options: MigratedPoolOptions,
): Promise<{ pool: Pool; applied: number[] }> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only with Postgres (≈ 2.6 MiB heap)
  const { Pool: PgPool } = require('pg') as typeof import('pg');
  const statementTimeoutMs = options.statementTimeoutMs ?? 60_000;
  const pool = new PgPool({
    connectionString: url,
    max: options.maxConnections,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: statementTimeoutMs,
    query_timeout: statementTimeoutMs + 5_000,
    application_name: options.applicationName,
  });
  // An idle connection that breaks must not crash the process; the next query reconnects.
  pool.on('error', (err) => options.onError?.(err));
  let client: PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw new Error(
      `cannot reach the ${options.what} database at ${redactDatabaseUrl(url)}: ${(err as Error).message}; check PERISCOPE_DATABASE_URL and that the database accepts connections from here`,
    );
  }
  let applied: number[];
  try {
    applied = await migrate(client);
  } catch (err) {
    client.release(err as Error); // before end(): the pool waits for its clients
    await pool.end().catch(() => undefined);
    throw new Error(
      `cannot migrate the ${options.what} database at ${redactDatabaseUrl(url)}: ${(err as Error).message}`,
    );
  }
  client.release();
  return { pool, applied };
}
