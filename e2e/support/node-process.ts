/**
 * Child Node processes for the local system and the benchmarks: start one with its output split
 * into lines, wait for an HTTP readiness URL, and stop it (SIGTERM, then SIGKILL).
 */
import { spawn, type ChildProcessByStdio, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';

/** `node <args>` with `env` over ours; every non-empty output line (stdout and stderr) to `onLine`. */
export function spawnNode(
  args: string[],
  env: NodeJS.ProcessEnv,
  onLine: (line: string) => void,
): ChildProcessByStdio<null, Readable, Readable> {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const split = (chunk: Buffer): void => {
    for (const line of chunk.toString().split('\n')) if (line.trim() !== '') onLine(line);
  };
  child.stdout.on('data', split);
  child.stderr.on('data', split);
  return child;
}

/** Resolves once `url` answers 2xx; fails when `alive()` turns false or after `timeoutMs`. */
export async function waitHttp(url: string, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!alive()) throw new Error(`the process behind ${url} exited`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${url}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
export function terminate(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(kill);
      done();
    });
    child.kill('SIGTERM');
  });
}
