/**
 * Test helpers: run the bundled programs as real processes, with fake "real" binaries, and drive
 * them under a real pseudo-terminal. Not part of either bundle.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { bundleShellPrograms, type ShellProgram } from '../build/bundle';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A fresh temp directory for one test file. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `periscope-shell-${prefix}-`));
}

/** Builds both programs exactly as the image build does, into `dir/dist`. */
export async function bundledPrograms(dir: string): Promise<Record<ShellProgram, string>> {
  const built = await bundleShellPrograms(join(dir, 'dist'));
  const shell = built['periscope-shell'];
  const auditExec = built['periscope-audit-exec'];
  if (shell === undefined || auditExec === undefined) throw new Error('a shell program was not built');
  return { 'periscope-shell': shell, 'periscope-audit-exec': auditExec };
}

/** Writes an executable file. */
export function writeExecutable(path: string, content: string): string {
  writeFileSync(path, content);
  chmodSync(path, 0o755);
  return path;
}

export interface Toolbox {
  /** Holds `kubectl`, `helm` and `oc` symlinks to the bundled wrapper (as /usr/local/bin does). */
  binDir: string;
  /** Where the fake `<tool>-real` binaries go (PERISCOPE_AUDIT_EXEC_REAL_DIR). */
  realDir: string;
}

/** Lays out the wrapper like the image: symlinks named after the tools, real binaries elsewhere. */
export function toolbox(dir: string, wrapper: string, names = ['kubectl', 'helm', 'oc']): Toolbox {
  const binDir = join(dir, 'bin');
  const realDir = join(dir, 'real');
  mkdirSync(binDir, { recursive: true });
  mkdirSync(realDir, { recursive: true });
  for (const name of names) symlinkSync(wrapper, join(binDir, name));
  return { binDir, realDir };
}

/** Runs a program to completion with optional stdin; never rejects. */
export function run(
  file: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; detached?: boolean } = {},
): Promise<RunResult> & {
  pid: () => number | undefined;
  kill: (s: NodeJS.Signals) => void;
  /** stdout so far */
  output: () => string;
} {
  const child = spawn(file, [...args], {
    env: opts.env ?? process.env,
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: opts.detached ?? false,
  });
  let stdout = '';
  let stderr = '';
  const promise = new Promise<RunResult>((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr: stderr + String(err) });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
  return Object.assign(promise, {
    pid: () => child.pid,
    kill: (s: NodeJS.Signals) => {
      child.kill(s);
    },
    output: () => stdout,
  });
}

/** Waits until `check` is true (polling), or throws after `timeoutMs`. */
export async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export type PtyStep = { send: string } | { expect: string; timeout?: number } | { sleep: number };

export interface PtyResult {
  out: string;
  /** exit status, or null when killed by a signal */
  code: number | null;
  /** signal number that killed the program, or null */
  signal: number | null;
  /** true when an `expect` step timed out (the program was then killed) */
  timedOut: boolean;
}

// A person at a terminal: the program runs as the session leader of a new pseudo-terminal and is
// its foreground process group, so Ctrl-C (\x03) reaches its whole group as it does in a pod.
const PTY_DRIVER = String.raw`
import json, os, pty, re, select, signal, sys, time
cmd = json.loads(sys.argv[1]); steps = json.loads(sys.argv[2]); env = json.loads(sys.argv[3])
pid, fd = pty.fork()
if pid == 0:
    os.execvpe(cmd[0], cmd, env)
out = b""; seen = 0; timed_out = False
def pump(t):
    global out
    r, _, _ = select.select([fd], [], [], t)
    if not r: return True
    try: data = os.read(fd, 65536)
    except OSError: return False
    if not data: return False
    out += data; return True
for step in steps:
    if "send" in step: os.write(fd, step["send"].encode())
    elif "sleep" in step:
        end = time.time() + step["sleep"]
        while time.time() < end and pump(0.05): pass
    else:
        pat = re.compile(step["expect"].encode()); end = time.time() + step.get("timeout", 15)
        while True:
            m = pat.search(out, seen)
            if m: seen = m.end(); break
            if time.time() > end or not pump(0.05):
                timed_out = True; break
        if timed_out:
            os.kill(pid, signal.SIGKILL); break
end = time.time() + 20; status = None
while time.time() < end:
    done, st = os.waitpid(pid, os.WNOHANG)
    if done: status = st; break
    pump(0.05)
if status is None:
    os.kill(pid, signal.SIGKILL); _, status = os.waitpid(pid, 0); timed_out = True
while pump(0.05): pass
print(json.dumps({"out": out.decode(errors="replace"), "timedOut": timed_out,
    "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
    "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}))
`;

/** Runs `cmd` under a real pseudo-terminal (python3's pty module) and plays `steps`. */
export async function underPty(
  cmd: readonly string[],
  steps: readonly PtyStep[],
  env: NodeJS.ProcessEnv,
): Promise<PtyResult> {
  const r = await run(
    'python3',
    ['-c', PTY_DRIVER, JSON.stringify(cmd), JSON.stringify(steps), JSON.stringify(env)],
    {
      timeoutMs: 60_000,
    },
  );
  if (r.code !== 0) throw new Error(`pty driver failed (${String(r.code)}): ${r.stderr}`);
  return JSON.parse(r.stdout) as PtyResult;
}
