/**
 * Bench-only diagnostics for the recording's cost in the running server (issue 19): CPU profiles
 * of the server's main thread and of its worker threads (the recording's encoder thread) through
 * the server's inspector (`NodeWorker` domain: `--cpu-prof` writes no profile for a worker that is
 * terminated at exit), and CPU per thread from /proc/<pid>/task.
 *
 * Used by recording-system-bench.ts when BENCH_PROFILE_DIR is set (profiles) and always (threads).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import WebSocket from 'ws';

/** CPU seconds per thread id of a process, from /proc/<pid>/task/<tid>/stat. */
export function threadsCpu(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tids)
    try {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(t), (Number(f[11]) + Number(f[12])) / 100);
    } catch {
      // ended meanwhile
    }
  return out;
}

/** CPU ms per MiB per thread between two samples: `+<tid − pid>` → ms, threads that ran only. */
export function threadsDelta(pid: number, a: Map<number, number>, b: Map<number, number>, mib: number) {
  const out: Record<string, number> = {};
  for (const [tid, s] of b) {
    const d = s - (a.get(tid) ?? 0);
    if (d > 0) out[`+${tid - pid}`] = Math.round((100_000 * d) / mib) / 100;
  }
  return out;
}

interface Msg {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
}

/** A profiling session on a process's main thread and its worker threads. */
export class ThreadProfiler {
  private ws!: WebSocket;
  private id = 0;
  private readonly waiting = new Map<number, (m: Msg) => void>();
  private readonly workerWaiting = new Map<string, Map<number, (m: Msg) => void>>();
  readonly workers = new Map<string, string>();

  async connect(url: string): Promise<void> {
    this.ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1 << 30 });
    await new Promise<void>((resolve, reject) => {
      this.ws.once('open', () => {
        resolve();
      });
      this.ws.once('error', reject);
    });
    this.ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString()) as Msg;
      if (m.id !== undefined) {
        this.waiting.get(m.id)?.(m);
        this.waiting.delete(m.id);
      } else if (m.method === 'NodeWorker.attachedToWorker') {
        const p = m.params as { sessionId: string; workerInfo: { title: string } };
        this.workers.set(p.sessionId, p.workerInfo.title);
      } else if (m.method === 'NodeWorker.receivedMessageFromWorker') {
        const p = m.params as { sessionId: string; message: string };
        const inner = JSON.parse(p.message) as Msg;
        if (inner.id === undefined) return;
        const w = this.workerWaiting.get(p.sessionId);
        w?.get(inner.id)?.(inner);
        w?.delete(inner.id);
      }
    });
    await this.call('NodeWorker.enable', { waitForDebuggerOnStart: false });
    await this.call('Profiler.enable');
    await this.call('Profiler.setSamplingInterval', { interval: 200 });
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<Msg> {
    const id = ++this.id;
    return this.deadline(
      new Promise((resolve) => {
        this.waiting.set(id, resolve);
        this.ws.send(JSON.stringify({ id, method, params }));
      }),
      method,
    );
  }

  callWorker(sessionId: string, method: string, params: Record<string, unknown> = {}): Promise<Msg> {
    const id = ++this.id;
    let w = this.workerWaiting.get(sessionId);
    if (!w) this.workerWaiting.set(sessionId, (w = new Map<number, (m: Msg) => void>()));
    const waiting = w;
    return this.deadline(
      new Promise((resolve) => {
        waiting.set(id, resolve);
        void this.call('NodeWorker.sendMessageToWorker', {
          sessionId,
          message: JSON.stringify({ id, method, params }),
        });
      }),
      method,
    );
  }

  private deadline(p: Promise<Msg>, what: string): Promise<Msg> {
    return Promise.race([
      p,
      new Promise<Msg>((_, reject) =>
        setTimeout(() => {
          reject(new Error(`no inspector answer to ${what} within 30 s`));
        }, 30_000),
      ),
    ]);
  }

  async start(): Promise<void> {
    await this.call('Profiler.start');
    for (const s of this.workers.keys()) {
      await this.callWorker(s, 'Profiler.enable');
      await this.callWorker(s, 'Profiler.setSamplingInterval', { interval: 200 });
      await this.callWorker(s, 'Profiler.start');
    }
  }

  /** Stops every profile and writes them as `<prefix>-main.cpuprofile`, `<prefix>-worker-N.cpuprofile`. */
  async stop(dir: string, prefix: string): Promise<string[]> {
    const files: string[] = [];
    const main = await this.call('Profiler.stop');
    files.push(join(dir, `${prefix}-main.cpuprofile`));
    writeFileSync(files[0] as string, JSON.stringify(main.result?.['profile']));
    let n = 0;
    for (const s of this.workers.keys()) {
      const r = await this.callWorker(s, 'Profiler.stop');
      const f = join(dir, `${prefix}-worker-${n++}.cpuprofile`);
      writeFileSync(f, JSON.stringify(r.result?.['profile']));
      files.push(f);
    }
    return files;
  }

  close(): void {
    this.ws.close();
  }
}
