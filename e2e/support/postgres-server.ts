/**
 * A throwaway PostgreSQL cluster for tests, from Debian's packages (/usr/lib/postgresql/<n>/bin):
 * initdb into a temp directory, a postgres listening on 127.0.0.1 only (a free port) and on a unix
 * socket in that directory, fsync off; stopped and removed by `stop()`. PostgreSQL refuses to run as
 * root, so under root the cluster belongs to the `postgres` user (or `nobody`) and runs as it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Client, type QueryResultRow } from 'pg';

export interface PostgresServer {
  /** postgres://periscope:<a random password>@127.0.0.1:<port>/postgres (password auth over TCP) */
  url: string;
  /** The URL of database `name` on this server. */
  urlOf(name: string): string;
  /** Creates an empty database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Fast shutdown (SIGINT), SIGKILL after the deadline, then the directory is removed. */
  stop(): Promise<void>;
}

export interface PostgresServerOptions {
  /** Deadline of initdb plus the first accepted connection (default 60 s: a busy shared machine). */
  startTimeoutMs?: number;
  log?: (line: string) => void;
}

const USER = 'periscope';
/** Bounded tail of the server's output, shown when it fails to start. */
const LOG_TAIL_LINES = 40;

/** The newest /usr/lib/postgresql/<n>/bin that has initdb and postgres. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = join(root, v, 'bin');
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres'))) return bin;
  }
  return undefined;
}

/** The uid/gid to run as when we are root: postgres, else nobody. */
function unprivileged(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n');
  for (const name of ['postgres', 'nobody']) {
    const f = passwd.find((l) => l.startsWith(`${name}:`))?.split(':');
    if (f && f[2] !== undefined && f[3] !== undefined) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error('running as root and neither a postgres nor a nobody user exists to run PostgreSQL as');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => {
        if (a !== null && typeof a === 'object') resolve(a.port);
        else reject(new Error('no port'));
      });
    });
  });
}

export async function startPostgres(options: PostgresServerOptions = {}): Promise<PostgresServer> {
  const bin = postgresBinDir();
  if (!bin)
    throw new Error(
      "PostgreSQL is not installed (no /usr/lib/postgresql/<n>/bin/initdb); install Debian's postgresql package (apt-get install postgresql)",
    );
  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  const left = (): number => Math.max(1, deadline - Date.now());
  const as = unprivileged();
  // A fresh password per server, so a test can look for it in logs.
  const PASSWORD = `pw-${randomBytes(12).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'periscope-pg-'));
  const data = join(dir, 'data');
  if (as) chownSync(dir, as.uid, as.gid);
  const pwfile = join(dir, 'pwfile');
  writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
  if (as) chownSync(pwfile, as.uid, as.gid);
  const init = spawnSync(
    join(bin, 'initdb'),
    [
      '-D',
      data,
      '-U',
      USER,
      `--pwfile=${pwfile}`,
      '-A',
      'scram-sha-256',
      '-E',
      'UTF8',
      '--no-locale',
      '--no-sync',
    ],
    { encoding: 'utf8', timeout: left(), ...(as ?? {}) },
  );
  rmSync(pwfile, { force: true });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(
      `initdb failed (${init.error?.message ?? `exit ${init.status}`}): ${`${init.stdout}\n${init.stderr}`.trim().slice(-2000)}`,
    );
  }

  const port = await freePort();
  const tail: string[] = [];
  const child: ChildProcess = spawn(
    join(bin, 'postgres'),
    [
      '-D',
      data,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      `unix_socket_directories=${dir}`,
      '-c',
      'fsync=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'max_connections=100',
      '-c',
      'shared_buffers=32MB',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], ...(as ?? {}) },
  );
  const onOutput = (chunk: Buffer): void => {
    for (const line of chunk.toString().split('\n')) {
      if (line.trim() === '') continue;
      tail.push(line);
      if (tail.length > LOG_TAIL_LINES) tail.shift();
      options.log?.(line);
    }
  };
  child.stdout?.on('data', onOutput);
  child.stderr?.on('data', onOutput);
  // A test process that exits without stop() (a crash, a killed worker) takes the server with it.
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      process.off('exit', killOnExit);
      resolve();
    });
  });

  const urlOf = (name: string): string =>
    `postgres://${USER}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${port}/${encodeURIComponent(name)}`;
  const url = urlOf('postgres');

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
        child.kill('SIGINT'); // fast shutdown: roll back, disconnect, stop
        await exited;
        clearTimeout(kill);
      }
      rmSync(dir, { recursive: true, force: true });
    })());

  // Ready when a connection is accepted, within the deadline.
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`postgres exited while starting:\n${tail.join('\n')}`);
    }
    const c = new Client({ connectionString: url, connectionTimeoutMillis: Math.min(2_000, left()) });
    try {
      await c.connect();
      await c.end();
      break;
    } catch {
      await c.end().catch(() => undefined);
    }
    if (Date.now() >= deadline) {
      await stop();
      throw new Error(`postgres did not accept connections within the deadline:\n${tail.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    url,
    urlOf,
    async createDatabase(name: string): Promise<string> {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`not a plain database name: ${name}`);
      const c = new Client({
        connectionString: url,
        connectionTimeoutMillis: 10_000,
        statement_timeout: 30_000,
      });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${name}`);
      } finally {
        await c.end();
      }
      return urlOf(name);
    },
    stop,
  };
}

/**
 * Runs one statement against the database at `url` over a connection of its own (10 s to connect,
 * `statementTimeoutMs` for the statement) and returns its rows; the connection is closed after.
 */
export async function pgQuery<T extends QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
  statementTimeoutMs = 10_000,
): Promise<T[]> {
  const c = new Client({
    connectionString: url,
    connectionTimeoutMillis: 10_000,
    statement_timeout: statementTimeoutMs,
  });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}
