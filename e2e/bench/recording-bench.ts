/**
 * The cost of server-side session recording (issue 19), recording off vs on side by side, in one
 * process: a real TerminalSession behind a real WebSocket on loopback, a synthetic exec that
 * produces output as fast as the session takes it (honouring its pause) and echoes stdin, and for
 * "on" the real SessionRecorder writing asciicast to a real file (fsync at close).
 *
 *   npx tsx e2e/bench/recording-bench.ts [--mib=256] [--samples=400] [--rounds=3]
 *
 * Measures bulk output throughput to the client (MiB/s, best of 2) with the CPU the whole process
 * (all threads: relay, encoder thread, file writes) spent per MiB, and the keystroke round trip
 * (one byte in, its echo back; p50/p95/p99 ms), off and on alternated `--rounds` times (medians),
 * and the encoder alone in MiB per CPU second. The
 * relay here has no cluster behind it, so its cost is an upper bound; the goal (≤ 5 % throughput,
 * ≤ 0.2 ms p50) is judged on the full path by recording-system-bench.ts.
 * Writes e2e/bench/results/recording-<time>.json.
 */
import 'reflect-metadata';

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { ExecChannel, ExecChannelHandlers } from '@periscope/cluster-ops';
import pino from 'pino';
import WebSocket, { WebSocketServer } from 'ws';

import type { EncoderEvent } from '../../apps/server/src/recording/cast-encoder-protocol';
import { CastLineEncoder } from '../../apps/server/src/recording/cast-line-encoder';
import { FileRecordingStore } from '../../apps/server/src/recording/recording-store';
import { SessionRecorder } from '../../apps/server/src/recording/session-recorder';
import { TerminalSession, type SessionDriver } from '../../apps/server/src/terminal/terminal-session';
import { dist, pct, round, type Dist } from './bench-lib';
import { threadsCpu, threadsDelta } from './recording-profile';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const MIB = Number(flag('mib') ?? process.env['BENCH_RECORDING_MIB'] ?? 256);
const SAMPLES = Number(flag('samples') ?? process.env['BENCH_RECORDING_SAMPLES'] ?? 400);
const ROUNDS = Number(flag('rounds') ?? process.env['BENCH_RECORDING_ROUNDS'] ?? 3);
const CHUNK = 32 * 1024;

/** An exec that streams `bulkBytes` of text when asked (stdin `B`), echoing every other byte. */
class SyntheticExec implements ExecChannel {
  readonly protocol = 'synthetic';
  private left = 0;
  private paused = false;
  private readonly chunk = Buffer.alloc(CHUNK, 'periscope-recording-bench 0123456789\r\n'.repeat(1));

  constructor(private readonly h: ExecChannelHandlers) {}

  write(bytes: Uint8Array): boolean {
    if (bytes.length === 1 && bytes[0] === 0x42 /* B */) {
      this.left = MIB * 1024 * 1024;
      this.pump();
    } else this.h.onOutput(1, Buffer.from(bytes));
    return true;
  }
  end(): void {}
  resize(): void {}
  resume(): void {
    this.paused = false;
    this.pump();
  }
  close(): void {
    this.left = 0;
  }

  private pump(): void {
    // Yields to the event loop between batches, as a socket source would.
    setImmediate(() => {
      for (let i = 0; i < 8 && this.left > 0 && !this.paused; i++) {
        const n = Math.min(CHUNK, this.left);
        this.left -= n;
        if (!this.h.onOutput(1, n === CHUNK ? this.chunk : this.chunk.subarray(0, n))) this.paused = true;
      }
      if (this.left > 0 && !this.paused) this.pump();
    });
  }
}

function driver(): SessionDriver {
  return {
    start: (io) => Promise.resolve(new SyntheticExec(io.handlers)),
    classifyExit: () => ({ reason: 'exit', exitCode: 0 }),
    classifyStartError: () => ({
      reason: 'failed',
      error: { code: 'E', message: 'no', retryable: false },
    }),
    finish: () => Promise.resolve(),
  };
}

interface Run {
  mibPerSecond: number;
  /** CPU of the whole process (every thread) per MiB of the best bulk run */
  cpuMsPerMiB: number;
  /** the same per thread (`+<tid − pid>`, +0 the main thread) */
  cpuMsPerMiBByThread: Record<string, number>;
  keystroke: Dist;
  recordingMiB: number;
  /** the recorder dropped output (it must not: the session pauses instead) */
  recordingTruncated: boolean;
}

async function run(record: boolean, dir: string): Promise<Run> {
  const http = createServer();
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const port = (http.address() as AddressInfo).port;
  const log = pino({ level: 'silent' });
  const store = new FileRecordingStore(dir);
  let recorder: SessionRecorder | undefined;
  let session: TerminalSession | undefined;
  wss.on('connection', (ws) => {
    const id = crypto.randomUUID();
    session = new TerminalSession(
      {
        sessionId: id,
        kind: 'pod_exec',
        subject: 'bench',
        tier: 'admin',
        cluster: 'bench',
        startedAt: new Date(),
      },
      driver(),
      {
        idleSeconds: 3600,
        idleWarnSeconds: 60,
        heartbeatSeconds: 3600,
        maxSessionSeconds: 86_400,
        maxWarnSeconds: 0,
        graceSeconds: 0,
        bufferBytes: 4 * 1024 * 1024,
      },
      log,
    );
    if (record) {
      recorder = new SessionRecorder(store, {
        id,
        mode: 'output',
        maxBytes: 64 * 1024 ** 3,
        startedAt: Date.now(),
        header: { version: 2, width: 80, height: 24, timestamp: 0, title: 'bench', env: { TERM: 'xterm' } },
      });
      session.addTap(recorder);
    }
    session.start(ws);
  });
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
  await new Promise((r) => ws.once('open', r));
  let received = 0;
  let waiter: { want: number; resolve: () => void } | undefined;
  let echo: ((b: Buffer) => void) | undefined;
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) return;
    received += data.length;
    if (echo && data.length === 1) echo(data);
    if (waiter && received >= waiter.want) waiter.resolve();
  });
  await new Promise((r) => setTimeout(r, 100)); // the exec is up

  // Keystrokes first (idle), one at a time.
  const rtts: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const t = performance.now();
    await new Promise<void>((resolve) => {
      echo = () => {
        resolve();
      };
      ws.send(Buffer.from([0x61 + (i % 26)]));
    });
    rtts.push(performance.now() - t);
  }
  echo = undefined;

  // Bulk, best of two.
  let best = 0;
  let cpuMsPerMiB = NaN;
  /** CPU ms per MiB per thread (`+<tid − pid>`; the encoder thread, V8's and libuv's helpers) */
  let byThread: Record<string, number> = {};
  for (let r = 0; r < 2; r++) {
    const want = received + MIB * 1024 * 1024;
    const t = performance.now();
    const cpu = process.cpuUsage();
    const threads0 = threadsCpu(process.pid);
    await new Promise<void>((resolve) => {
      waiter = { want, resolve };
      ws.send(Buffer.from('B'));
    });
    waiter = undefined;
    const speed = MIB / ((performance.now() - t) / 1000);
    // the recording's last batches are with the encoder and the disk a few ms longer
    if (recorder) await new Promise((resolve) => setTimeout(resolve, 50));
    const u = process.cpuUsage(cpu);
    if (speed > best) {
      cpuMsPerMiB = (u.user + u.system) / 1000 / MIB;
      byThread = threadsDelta(process.pid, threads0, threadsCpu(process.pid), MIB);
    }
    best = Math.max(best, speed);
  }
  await session?.end('client_close', null);
  const summary = recorder ? await recorder.finish() : undefined;
  ws.close();
  wss.close();
  http.close();
  return {
    mibPerSecond: round(best, 1),
    cpuMsPerMiB: round(cpuMsPerMiB, 2),
    cpuMsPerMiBByThread: byThread,
    keystroke: dist(rtts),
    recordingMiB: summary ? round(summary.bytes / 2 ** 20, 1) : 0,
    recordingTruncated: summary?.truncated ?? false,
  };
}

/**
 * The encoder alone (what the recording thread does per byte: UTF-8 check, JSON escaping,
 * SHA-256), in MiB per CPU second of this thread, best of 3: less sensitive to the machine's load
 * than the wall-clock throughput above. Batches as the recorder makes them (256 KiB of 32 KiB reads).
 */
function encoderCpu(): { text: number; utf8: number; yes: number } {
  const run = (chunk: Buffer): number => {
    const raw = new Uint8Array(256 * 1024);
    for (let o = 0; o < raw.length; o += chunk.length) raw.set(chunk.subarray(0, raw.length - o), o);
    const events: EncoderEvent[] = Array.from({ length: 8 }, (_, i) => ({
      t: i / 1000,
      code: 'o',
      off: i * CHUNK,
      len: CHUNK,
    }));
    let best = 0;
    for (let r = 0; r < 3; r++) {
      const enc = new CastLineEncoder(2 ** 40);
      const t = process.cpuUsage();
      for (let i = 0; i < 256; i++) enc.encode(raw, events); // 64 MiB
      const u = process.cpuUsage(t);
      best = Math.max(best, 64 / ((u.user + u.system) / 1e6));
    }
    return round(best, 0);
  };
  return {
    text: run(Buffer.from('periscope-recording-bench 0123456789\r\n')),
    utf8: run(Buffer.from('журнал записи сеанса — ä € 漢字 \x1b[31mred\x1b[0m\r\n')),
    // the full-path bench's `yes` line (recording-system-bench.ts)
    yes: run(Buffer.from('periscope-bench-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n')),
  };
}

/** The median of each measure over the rounds (keystroke percentiles each their own median). */
function medianRun(runs: Run[]): Run {
  const m = (f: (r: Run) => number): number => pct(runs.map(f), 50);
  return {
    mibPerSecond: m((r) => r.mibPerSecond),
    cpuMsPerMiB: m((r) => r.cpuMsPerMiB),
    cpuMsPerMiBByThread: Object.fromEntries(
      [...new Set(runs.flatMap((r) => Object.keys(r.cpuMsPerMiBByThread)))].map((k) => [
        k,
        m((r) => r.cpuMsPerMiBByThread[k] ?? 0),
      ]),
    ),
    keystroke: {
      n: runs.reduce((n, r) => n + r.keystroke.n, 0),
      p50: m((r) => r.keystroke.p50),
      p95: m((r) => r.keystroke.p95),
      p99: m((r) => r.keystroke.p99),
      max: Math.max(...runs.map((r) => r.keystroke.max)),
    },
    recordingMiB: m((r) => r.recordingMiB),
    recordingTruncated: runs.some((r) => r.recordingTruncated),
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-recording-bench-'));
  try {
    // Alternated, so both see the same machine; the medians of the rounds.
    const offs: Run[] = [];
    const ons: Run[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      offs.push(await run(false, dir));
      ons.push(await run(true, dir));
    }
    const off = medianRun(offs);
    const on = medianRun(ons);
    const throughputCostPct = round(100 * (1 - on.mibPerSecond / off.mibPerSecond), 1);
    const keystrokeAddedP50Ms = round(on.keystroke.p50 - off.keystroke.p50, 3);
    const encoder = encoderCpu();
    const results = {
      mib: MIB,
      encoderMiBPerCpuSecond: encoder,
      encoderCpuMsPerMiB: {
        text: round(1000 / encoder.text, 2),
        utf8: round(1000 / encoder.utf8, 2),
        yes: round(1000 / encoder.yes, 2),
      },
      samples: SAMPLES,
      rounds: ROUNDS,
      off,
      on,
      offRuns: offs,
      onRuns: ons,
      throughputCostPct,
      keystrokeAddedP50Ms,
      goals: { throughputCostPct: 5, keystrokeAddedP50Ms: 0.2 },
      met: throughputCostPct <= 5 && keystrokeAddedP50Ms <= 0.2,
    };
    process.stderr.write(
      `[recording] medians of ${ROUNDS} rounds: off ${off.mibPerSecond} MiB/s (${off.cpuMsPerMiB} CPU ms/MiB), keystroke p50 ${off.keystroke.p50} ms · on ${on.mibPerSecond} MiB/s (${on.cpuMsPerMiB} CPU ms/MiB; ${throughputCostPct} % cost), keystroke p50 ${on.keystroke.p50} ms (+${keystrokeAddedP50Ms}); encoder alone ${encoder.text} MiB/s of CPU (ASCII text), ${encoder.utf8} (UTF-8 text), ${encoder.yes} (yes line)\n`,
    );
    process.stderr.write(
      `[recording] CPU ms/MiB by thread (tid − pid; +0 the main thread), off ${JSON.stringify(off.cpuMsPerMiBByThread)} · on ${JSON.stringify(on.cpuMsPerMiBByThread)}\n`,
    );
    const out = join(__dirname, 'results');
    mkdirSync(out, { recursive: true });
    const file = join(out, `recording-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, JSON.stringify(results, null, 2));
    process.stdout.write(`wrote ${file}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}

void main();
