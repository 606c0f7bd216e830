/**
 * A throwaway real `redis-server` (Debian's, /usr/bin/redis-server) on 127.0.0.1 and a free
 * port: no persistence (no RDB, no AOF), its files in a temp dir removed at stop. Start and stop
 * have deadlines; the output is kept (bounded) for the error when it does not come up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REDIS_SERVER_BIN = process.env['PERISCOPE_REDIS_SERVER_BIN'] ?? '/usr/bin/redis-server';

export interface TestRedis {
  port: number;
  /** `redis://[:password@]127.0.0.1:<port>/0` */
  url: string;
  /** SIGTERM (SIGKILL after 5 s), then the temp dir goes. */
  stop(): Promise<void>;
  /** SIGKILL now: Redis lost without a goodbye. */
  kill(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr !== null && typeof addr === 'object') resolve(addr.port);
        else reject(new Error('no port'));
      });
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => {
      resolve();
    });
  });
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
  child.kill(signal);
  await exited(child);
  clearTimeout(kill);
}

/** Starts redis-server and resolves once it accepts connections (deadline `readyMs`). */
export async function startRedisServer({
  password,
  readyMs = 15_000,
}: { password?: string; readyMs?: number } = {}): Promise<TestRedis> {
  // The free port may be taken between the probe and the bind: a few tries.
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'periscope-redis-'));
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--daemonize',
      'no',
      '--loglevel',
      'notice',
      ...(password !== undefined ? ['--requirepass', password] : []),
    ];
    const child = spawn(REDIS_SERVER_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-8_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        resolve(false);
      }, readyMs);
      const check = (): void => {
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      child.stdout.on('data', check);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
      child.once('error', (err) => {
        output += `\n${err.message}`;
        clearTimeout(timer);
        resolve(false);
      });
    });
    const cleanup = async (signal: NodeJS.Signals): Promise<void> => {
      await stopChild(child, signal, 5_000);
      rmSync(dir, { recursive: true, force: true });
    };
    if (ready) {
      const auth = password !== undefined ? `:${encodeURIComponent(password)}@` : '';
      return {
        port,
        url: `redis://${auth}127.0.0.1:${port}/0`,
        stop: () => cleanup('SIGTERM'),
        kill: () => cleanup('SIGKILL'),
      };
    }
    await cleanup('SIGKILL');
    lastError = new Error(
      `redis-server (${REDIS_SERVER_BIN}) did not come up on 127.0.0.1:${port} within ${readyMs} ms:\n${output}`,
    );
    if (!/Address already in use/.test(output)) break;
  }
  throw lastError ?? new Error('redis-server did not start');
}
