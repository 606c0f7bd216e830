import { spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

const OWNER_FILE = 'owner.pid';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/**
 * The processes of one local cluster. Each child runs in its own process group (so its own
 * children die with it), logs to `<stateDir>/logs/<name>.log`, and is recorded in
 * `<stateDir>/pids/` so a later run can reap it if this process was killed without cleaning up.
 */
export class ProcessGroup {
  private readonly children = new Map<string, ChildProcess>();
  /** How each child was started, so it can be started again (restart of one component). */
  private readonly specs = new Map<string, { command: string; args: string[]; env: NodeJS.ProcessEnv }>();
  private readonly onExit = (): void => {
    this.killAllNow();
  };

  constructor(private readonly stateDir: string) {
    mkdirSync(join(stateDir, 'logs'), { recursive: true });
    mkdirSync(join(stateDir, 'pids'), { recursive: true });
    writeFileSync(join(stateDir, OWNER_FILE), String(process.pid));
    process.on('exit', this.onExit);
  }

  logPath(name: string): string {
    return join(this.stateDir, 'logs', `${name}.log`);
  }

  start(name: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
    const fd = openSync(this.logPath(name), 'a');
    const child = spawn(command, args, { detached: true, stdio: ['ignore', fd, fd], env });
    closeSync(fd);
    if (child.pid === undefined) throw new Error(`could not start ${name} (${command})`);
    writeFileSync(join(this.stateDir, 'pids', name), String(child.pid));
    this.children.set(name, child);
    this.specs.set(name, { command, args, env });
    return child;
  }

  /**
   * Stops one child (its whole process group) with `signal`; SIGTERM escalates to SIGKILL after
   * `graceMs`. It can be started again with `restart(name)`.
   */
  async stop(name: string, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
    const child = this.children.get(name);
    if (!child) return;
    if (signal === 'SIGKILL') {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((resolve) =>
          child.once('exit', () => {
            resolve();
          }),
        );
        killGroup(child.pid, 'SIGKILL');
        await exited;
      }
    } else await stopChild(child, graceMs);
  }

  /** Starts a stopped child again with the command, arguments and environment it had. */
  restart(name: string): ChildProcess {
    const spec = this.specs.get(name);
    if (!spec) throw new Error(`${name} was never started`);
    if (this.isRunning(name)) throw new Error(`${name} is still running`);
    return this.start(name, spec.command, spec.args, spec.env);
  }

  /** The last lines of a child's log, for error messages. */
  tail(name: string, lines = 25): string {
    try {
      return readFileSync(this.logPath(name), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  isRunning(name: string): boolean {
    const c = this.children.get(name);
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  pids(): number[] {
    return [...this.children.values()].map((c) => c.pid).filter((p): p is number => p !== undefined);
  }

  /** Stops children in reverse start order: SIGTERM, then SIGKILL after `graceMs`. */
  async stopAll(graceMs = 5000): Promise<void> {
    for (const [name, child] of [...this.children].reverse()) {
      await stopChild(child, graceMs);
      this.children.delete(name);
    }
    process.removeListener('exit', this.onExit);
  }

  private killAllNow(): void {
    for (const child of this.children.values()) if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
  }
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      resolve();
    }),
  );
  killGroup(child.pid, 'SIGTERM');
  const timer = new Promise<'timeout'>((resolve) =>
    setTimeout(() => {
      resolve('timeout');
    }, graceMs).unref(),
  );
  if ((await Promise.race([exited, timer])) === 'timeout') {
    killGroup(child.pid, 'SIGKILL');
    await exited;
  }
  // The group may still hold grandchildren that ignored SIGTERM.
  killGroup(child.pid, 'SIGKILL');
}

/**
 * Reaps runs under `root` whose owning process is gone (a test run or `cluster:up` that was
 * killed): kills every recorded process group and deletes the state directory.
 */
export function sweepStaleRuns(root: string, prefix: string): void {
  if (!existsSync(root)) return;
  for (const entry of readdirSync(root)) {
    if (!entry.startsWith(prefix)) continue;
    const dir = join(root, entry);
    let owner = 0;
    try {
      owner = Number(readFileSync(join(dir, OWNER_FILE), 'utf8'));
    } catch {
      continue;
    }
    if (owner > 0 && alive(owner)) continue;
    try {
      for (const f of readdirSync(join(dir, 'pids'))) {
        const pid = Number(readFileSync(join(dir, 'pids', f), 'utf8'));
        // Only kill a pid that still belongs to this run (its command line names the state dir).
        if (pid > 0 && cmdline(pid).includes(dir)) killGroup(pid, 'SIGKILL');
      }
    } catch {
      // no pids recorded
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
