/** Shared pieces of the system benchmarks: statistics, process memory, metrics, terminal sockets. */
import { readdirSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';

import * as k8s from '@kubernetes/client-node';
import { ExecSession, type ExecResult } from '@periscope/cluster-ops';
import WebSocket from 'ws';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const round = (v: number, digits = 2): number => Math.round(v * 10 ** digits) / 10 ** digits;

/** Nearest-rank percentile. */
export function pct(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

export interface Dist {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function dist(values: number[]): Dist {
  return {
    n: values.length,
    p50: round(pct(values, 50), 3),
    p95: round(pct(values, 95), 3),
    p99: round(pct(values, 99), 3),
    max: round(Math.max(...values), 3),
  };
}

/** VmRSS and VmHWM (peak) of a process, MiB. */
export function procMem(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

/** User + system CPU seconds a process has used so far (all its threads). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

/**
 * Busy CPU seconds of the whole machine so far, all cores (user, nice, system, irq, softirq, steal
 * from /proc/stat): what the processes account for plus the kernel's own threads (page-cache
 * writeback, network softirqs), which compete for the same cores.
 */
export function machineBusySeconds(): number {
  const f = (/^cpu\s+(.*)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? '').split(/\s+/).map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
  return busy / 100;
}

/** The control plane's processes (etcd, kube-apiserver, the process-backed node) of one run. */
export function clusterPids(stateDir: string): Record<string, number> {
  const out: Record<string, number> = {};
  const names: Record<string, string> = {
    etcd: 'etcd',
    'kube-apiserver': 'apiserver',
    'periscope-node': 'node',
  };
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      const name = names[basename(argv[0] ?? '')];
      if (name !== undefined && argv.some((a) => a.includes(stateDir))) out[name] = Number(e);
    } catch {
      // gone
    }
  }
  return out;
}

/** Samples VmRSS of some processes; `stop()` answers the peak of each and the time series. */
export class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  readonly peak: Record<string, number> = {};
  readonly series: { t: number; rss: Record<string, number> }[] = [];
  private readonly t0 = performance.now();

  constructor(
    private readonly pids: Record<string, number>,
    everyMs = 100,
  ) {
    this.sample();
    this.timer = setInterval(() => {
      this.sample();
    }, everyMs);
  }

  private sample(): void {
    const rss: Record<string, number> = {};
    for (const [name, pid] of Object.entries(this.pids)) {
      try {
        rss[name] = round(procMem(pid).rss, 1);
        this.peak[name] = Math.max(this.peak[name] ?? 0, rss[name]);
      } catch {
        // process gone
      }
    }
    this.series.push({ t: Math.round(performance.now() - this.t0), rss });
  }

  stop(): Record<string, number> {
    clearInterval(this.timer);
    this.sample();
    return this.peak;
  }
}

/** The unlabelled samples of the server's Prometheus metrics. */
export async function scrapeMetrics(base: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)\s+(\S+)$/.exec(line);
    if (m?.[1] && m[2]) out[m[1]] = Number(m[2]);
  }
  return out;
}

/**
 * Event-loop delay p99 of the server since the previous scrape (prom-client resets its
 * `monitorEventLoopDelay` histogram at every collection), in ms. The histogram's samples are
 * whole timer periods of 10 ms, so an idle loop reads ≈ 10 ms; `lagMs` is the excess over that.
 */
export async function loopDelayP99(base: string): Promise<{ p99Ms: number; lagMs: number; maxMs: number }> {
  const m = await scrapeMetrics(base);
  const p99 = (m['periscope_nodejs_eventloop_lag_p99_seconds'] ?? NaN) * 1000;
  const max = (m['periscope_nodejs_eventloop_lag_max_seconds'] ?? NaN) * 1000;
  return { p99Ms: round(p99), lagMs: round(Math.max(0, p99 - 10)), maxMs: round(max) };
}

/** Forces full garbage collections in the server through its inspector (loopback only). */
export async function forceGc(inspectorUrl: string): Promise<void> {
  const ws = new WebSocket(inspectorUrl, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => {
      resolve();
    });
    ws.once('error', reject);
  });
  let id = 0;
  const call = (method: string): Promise<void> =>
    new Promise((resolve) => {
      const my = ++id;
      const onMsg = (d: Buffer): void => {
        if ((JSON.parse(d.toString()) as { id?: number }).id === my) {
          ws.off('message', onMsg);
          resolve();
        }
      };
      ws.on('message', onMsg);
      ws.send(JSON.stringify({ id: my, method }));
    });
  await call('HeapProfiler.collectGarbage');
  await call('HeapProfiler.collectGarbage');
  ws.close();
  await sleep(300);
}

/** Evaluates `expression` in a process through its inspector; answers the value (JSON-able). */
export async function inspectorEval(
  inspectorUrl: string,
  expression: string,
  timeoutMs = 10_000,
): Promise<unknown> {
  const ws = new WebSocket(inspectorUrl, { perMessageDeflate: false });
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => {
        resolve();
      });
      ws.once('error', reject);
    });
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no inspector answer within ${timeoutMs} ms`));
      }, timeoutMs);
      ws.on('message', (d: Buffer) => {
        const m = JSON.parse(d.toString()) as {
          id?: number;
          result?: { result?: { value?: unknown }; exceptionDetails?: { text?: string } };
        };
        if (m.id !== 1) return;
        clearTimeout(timer);
        if (m.result?.exceptionDetails)
          reject(new Error(`inspector: ${m.result.exceptionDetails.text ?? 'exception'}`));
        else resolve(m.result?.result?.value);
      });
      ws.send(
        JSON.stringify({ id: 1, method: 'Runtime.evaluate', params: { expression, returnByValue: true } }),
      );
    });
  } finally {
    ws.close();
  }
}

export interface Frame {
  t: number;
  frame: Record<string, unknown>;
}

/**
 * A terminal WebSocket as the browser uses it, without keeping the output: `onData` sees each
 * binary frame, control frames are kept with their arrival time.
 */
export class Term {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  bytes = 0;
  /** binary messages received */
  messages = 0;
  firstByteAt: number | undefined;
  lastByteAt: number | undefined;
  onData: ((b: Buffer) => void) | undefined;
  onFrame: ((f: Record<string, unknown>) => void) | undefined;
  readonly opened: Promise<number>;
  readonly closed: Promise<number>;

  constructor(url: string, headers: Record<string, string>) {
    this.ws = new WebSocket(url, { headers, perMessageDeflate: false });
    this.ws.on('message', (data: Buffer, isBinary: boolean) => {
      const t = performance.now();
      if (isBinary) {
        this.messages++;
        this.firstByteAt ??= t;
        this.lastByteAt = t;
        this.bytes += data.length;
        this.onData?.(data);
      } else {
        const frame = JSON.parse(data.toString()) as Record<string, unknown>;
        this.frames.push({ t, frame });
        this.onFrame?.(frame);
      }
    });
    this.ws.on('error', () => undefined);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => {
        resolve(performance.now());
      });
      this.ws.once('unexpected-response', (_req, res) => {
        reject(new Error(`upgrade refused: HTTP ${res.statusCode ?? 0}`));
      });
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code: number) => {
        resolve(code);
      }),
    );
  }

  send(b: Buffer): void {
    this.ws.send(b, { binary: true });
  }

  control(frame: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(frame));
  }

  frame(type: string): Frame | undefined {
    return this.frames.find((f) => f.frame['type'] === type);
  }

  /** Asks the server to end the session (no resume), then drops the socket. */
  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) this.control({ type: 'close' });
    await Promise.race([this.closed, sleep(3000)]);
    this.ws.terminate();
  }
}

export interface BenchTarget {
  base: string;
  origin: string;
  cookie: string;
}

/** POST …/exec/sessions, then the socket; resolves once the socket is open. */
export async function openPodExec(
  sys: BenchTarget,
  cluster: string,
  ns: string,
  pod: string,
  body: { container: string; command: string[]; tty: boolean },
  /** set before the socket opens: output that comes with the upgrade answer is seen too */
  onData?: (b: Buffer) => void,
): Promise<Term> {
  const headers = { cookie: sys.cookie, origin: sys.origin };
  const res = await fetch(`${sys.base}/api/clusters/${cluster}/pods/${ns}/${pod}/exec/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  if (res.status !== 201) throw new Error(`exec session refused: HTTP ${res.status} ${await res.text()}`);
  const { socketPath } = (await res.json()) as { socketPath: string };
  const term = new Term(`${sys.base.replace('http', 'ws')}${socketPath}`, headers);
  term.onData = onData;
  await term.opened;
  return term;
}

/** A direct exec to the apiserver (Kubernetes WebSocket v5) with the admin kubeconfig. */
export class DirectExec {
  bytes = 0;
  /** stdout/stderr messages received */
  messages = 0;
  firstByteAt: number | undefined;
  lastByteAt: number | undefined;
  onData: ((b: Buffer) => void) | undefined;
  readonly exited: Promise<ExecResult>;
  private session: ExecSession | undefined;
  private exit!: (r: ExecResult) => void;

  constructor() {
    this.exited = new Promise((r) => (this.exit = r));
  }

  static async open(
    kc: k8s.KubeConfig,
    ns: string,
    pod: string,
    container: string,
    command: string[],
    onData?: (b: Buffer) => void,
  ): Promise<DirectExec> {
    const d = new DirectExec();
    d.onData = onData;
    d.session = await ExecSession.open(
      kc,
      { namespace: ns, pod, container, command, tty: false, stdin: true },
      {
        onOutput: (_ch, bytes) => {
          const t = performance.now();
          d.messages++;
          d.firstByteAt ??= t;
          d.lastByteAt = t;
          d.bytes += bytes.length;
          d.onData?.(bytes);
          return true;
        },
        onExit: (r) => {
          d.exit(r);
        },
      },
    );
    return d;
  }

  send(b: Buffer): void {
    this.session?.write(b, () => undefined);
  }

  close(): void {
    this.session?.close();
  }
}

/** Anything a byte can be echoed through. */
export interface Echo {
  send(b: Buffer): void;
  onData: ((b: Buffer) => void) | undefined;
}

/** One keystroke round trip: send one byte into `cat`, wait until it comes back. */
export function keystroke(e: Echo, byte: number, timeoutMs = 5000): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const timer = setTimeout(() => {
      e.onData = undefined;
      reject(new Error(`no echo within ${timeoutMs} ms`));
    }, timeoutMs);
    e.onData = (b) => {
      if (b.includes(byte)) {
        clearTimeout(timer);
        e.onData = undefined;
        resolve(performance.now() - t);
      }
    };
    e.send(Buffer.from([byte]));
  });
}

export function adminKubeConfig(path: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(path);
  return kc;
}
