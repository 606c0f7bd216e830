/**
 * The cost of the extra hop between replicas (issue 18): the browser's socket lands on replica A,
 * the agent tunnel of cluster `edge` is held by replica B, so A relays the terminal socket to B.
 * Side by side in one run, interleaved so that whatever else the machine does weighs on both paths
 * alike:
 *   - keystroke RTT (one byte into `cat` in a real pod, pod exec without a TTY) through A vs
 *     directly on B: p50 / p95 / p99, and the added p50 against the goal (≤ 1 ms);
 *   - bulk throughput of pod-exec output (`seq`, ≈ 32 MiB, SHA-256 checked) through A vs directly on
 *     B: MiB/s from the first byte to the last, median of the rounds, and the ratio.
 *
 *   TSX_TSCONFIG_PATH=tsconfig.base.json npx tsx e2e/bench/replica-forwarding-bench.ts \
 *     [--samples=300] [--warmup=30] [--mib=32] [--rounds=5]
 * or `npx tsx e2e/bench/run-all.ts --only=forwarded`.
 *
 * Three in-process replicas (from the sources, not the build) on one real redis-server, a fresh
 * local control plane and a real agent (e2e/support/replica-trio.ts). The replicas, the agent and
 * this client share one Node process and its event loop, so the hop is measured with its CPU cost,
 * not only its network cost. Prints a table and writes JSON to e2e/bench/results/.
 */
import 'reflect-metadata';

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import Module from 'node:module';
import { cpus } from 'node:os';
import { join, sep } from 'node:path';

import { transformSync } from '@swc/core';

import { ensureBinaries } from '../k8s/binaries';
import type { ReplicaTrio, TrioReplica } from '../support/replica-trio';
import { dist, keystroke, round, type Dist, type Echo } from './bench-lib';

/**
 * tsx compiles with esbuild, which drops the decorator metadata Nest's injector reads (the
 * replicas and the agent run in this process from their sources). TypeScript required from here
 * on is compiled by SWC with decorator metadata, as vitest.config.mts does for the tests; tsx still
 * resolves the modules.
 */
type CjsModule = { _compile(code: string, filename: string): void };
const extensions = (Module as unknown as { _extensions: Record<string, (m: CjsModule, f: string) => void> })
  ._extensions;
const esbuildTs = extensions['.ts'];
extensions['.ts'] = (m, filename) => {
  if (filename.includes(`${sep}node_modules${sep}`) && esbuildTs) {
    esbuildTs(m, filename);
    return;
  }
  const { code } = transformSync(readFileSync(filename, 'utf8'), {
    filename,
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
      target: 'es2022',
    },
    module: { type: 'commonjs' },
    sourceMaps: 'inline',
  });
  m._compile(code, filename);
};
// eslint-disable-next-line @typescript-eslint/no-require-imports -- after the hook above, on purpose
const { startReplicaTrio } = require('../support/replica-trio') as typeof import('../support/replica-trio');

const args = process.argv.slice(2);
const flag = (name: string, dflt: number): number => {
  const v = args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const n = v === undefined ? dflt : Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name}=${String(v)}: expected a positive number`);
  return n;
};
const SAMPLES = flag('samples', 300);
const WARMUP = flag('warmup', 30);
const MIB = flag('mib', 32);
const ROUNDS = flag('rounds', 5);
const GOAL_ADDED_P50_MS = 1;
const BULK_DEADLINE_MS = 120_000;
const RUN_DEADLINE_MS = 15 * 60_000;

const t0 = performance.now();
const say = (l: string): void => {
  process.stderr.write(`[forwarded ${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${l}\n`);
};
const uptime = (): string => {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return readFileSync('/proc/loadavg', 'utf8').trim();
  }
};
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2;
};

/** `seq 1 n` with n the smallest count whose output is at least `bytes`; its size and SHA-256. */
function seqFor(bytes: number): { lines: number; bytes: number; sha256: string } {
  const hash = createHash('sha256');
  let size = 0;
  let n = 0;
  while (size < bytes) {
    const batch: string[] = [];
    for (let i = 0; i < 100_000 && size < bytes; i++) {
      n++;
      const line = `${n}\n`;
      batch.push(line);
      size += line.length;
    }
    hash.update(batch.join(''));
  }
  return { lines: n, bytes: size, sha256: hash.digest('hex') };
}

async function echoVia(trio: ReplicaTrio, via: TrioReplica) {
  const { client } = await trio.openExec(via, { tty: false, command: ['cat'] });
  const echo: Echo = {
    send: (b) => {
      client.ws.send(b);
    },
    onData: undefined,
  };
  client.ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) {
      echo.onData?.(data);
      client.chunks.length = 0; // the echoes are not kept
    }
  });
  return { client, echo };
}

/** One bulk run through `via`: MiB/s from the first output byte to the last, checked by SHA-256. */
async function bulk(
  trio: ReplicaTrio,
  via: TrioReplica,
  expected: { lines: number; bytes: number; sha256: string },
): Promise<{ mibS: number; seconds: number; bytes: number }> {
  const { client } = await trio.openExec(via, { tty: false, command: ['seq', '1', String(expected.lines)] });
  const hash = createHash('sha256');
  let bytes = 0;
  let first = 0;
  let last = 0;
  client.ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) return;
    const now = performance.now();
    if (bytes === 0) first = now;
    last = now;
    bytes += data.length;
    hash.update(data);
    client.chunks.length = 0; // hashed as it arrives; the client keeps nothing
  });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      client.ws.terminate();
      reject(
        new Error(
          `bulk through ${via.id}: ${bytes} of ${expected.bytes} bytes after ${BULK_DEADLINE_MS / 1000} s; is the machine overloaded (uptime) or the agent tunnel down?`,
        ),
      );
    }, BULK_DEADLINE_MS);
  });
  try {
    await Promise.race([client.closed, deadline]);
  } finally {
    clearTimeout(timer);
  }
  const exit = client.frames.find((f) => f['type'] === 'closed');
  if (exit?.['reason'] !== 'exit' || exit['exitCode'] !== 0)
    throw new Error(`bulk through ${via.id}: the session ended with ${JSON.stringify(exit ?? null)}`);
  const sha = hash.digest('hex');
  if (bytes !== expected.bytes || sha !== expected.sha256)
    throw new Error(
      `bulk through ${via.id}: got ${bytes} bytes (sha256 ${sha}), expected ${expected.bytes} (${expected.sha256})`,
    );
  const seconds = (last - first) / 1000;
  return { mibS: round(bytes / 1024 / 1024 / seconds, 1), seconds: round(seconds, 3), bytes };
}

async function main(): Promise<void> {
  const started = new Date();
  const load = { before: uptime(), after: '' };
  say(
    `${SAMPLES} keystroke samples (+${WARMUP} warm-up), ${ROUNDS} × ${MIB} MiB bulk per path; ${load.before}`,
  );
  const expected = seqFor(MIB * 1024 * 1024);
  say('starting the local control plane, redis-server, three replicas and the agent on B');
  const trio = await startReplicaTrio(ensureBinaries({ quiet: true }).dir);
  const [a, b] = [trio.replica('fwd-a'), trio.replica('fwd-b')];
  const paths = [
    ['through A', a],
    ['directly on B', b],
  ] as const;
  let result: Record<string, unknown>;
  try {
    say('keystrokes: `cat` in the pod, one byte at a time, the two paths interleaved');
    const echoes = [];
    for (const [name, via] of paths)
      echoes.push({ name, ...(await echoVia(trio, via)), rtts: [] as number[] });
    for (let i = 0; i < WARMUP + SAMPLES; i++)
      for (const e of i % 2 === 0 ? echoes : [...echoes].reverse()) {
        const rtt = await keystroke(e.echo, 97 + (i % 26));
        if (i >= WARMUP) e.rtts.push(rtt);
      }
    for (const e of echoes) {
      e.client.ws.close();
      await Promise.race([e.client.closed, new Promise((r) => setTimeout(r, 5_000))]);
    }
    const [viaA, direct] = echoes.map((e) => dist(e.rtts)) as [Dist, Dist];
    const addedP50 = round(viaA.p50 - direct.p50, 3);

    say(`bulk: seq 1 ${expected.lines} (${expected.bytes} bytes), the two paths alternating`);
    const runs: Record<'viaA' | 'directB', { mibS: number; seconds: number; bytes: number }[]> = {
      viaA: [],
      directB: [],
    };
    for (let r = 0; r < ROUNDS; r++)
      for (const [name, via] of r % 2 === 0 ? paths : [...paths].reverse()) {
        const run = await bulk(trio, via, expected);
        (via === a ? runs.viaA : runs.directB).push(run);
        say(`  round ${r + 1} ${name}: ${run.mibS} MiB/s`);
      }
    const mibS = {
      viaA: round(median(runs.viaA.map((x) => x.mibS)), 1),
      directB: round(median(runs.directB.map((x) => x.mibS)), 1),
    };
    const throughputRatio = round(mibS.viaA / mibS.directB, 3);
    result = {
      samples: SAMPLES,
      warmup: WARMUP,
      keystroke: { viaA, directB: direct },
      addedP50Ms: addedP50,
      goalAddedP50Ms: GOAL_ADDED_P50_MS,
      met: addedP50 <= GOAL_ADDED_P50_MS,
      bulk: {
        mib: round(expected.bytes / 1024 / 1024, 2),
        bytes: expected.bytes,
        rounds: ROUNDS,
        runs,
        mibS,
      },
      throughputRatio,
    };
  } finally {
    say('stopping');
    await trio.stop();
  }
  load.after = uptime();
  const k = result['keystroke'] as { viaA: Dist; directB: Dist };
  const bk = result['bulk'] as { mib: number; mibS: { viaA: number; directB: number } };
  const f = (d: Dist): string => `${d.p50} / ${d.p95} / ${d.p99}`;
  const rows = [
    [
      `keystroke RTT, ${SAMPLES} samples, p50 / p95 / p99 (ms)`,
      f(k.viaA),
      f(k.directB),
      `${Number(result['addedP50Ms']) >= 0 ? '+' : ''}${String(result['addedP50Ms'])} ms p50 (goal ≤ ${GOAL_ADDED_P50_MS} ms: ${result['met'] === true ? 'met' : 'not met'})`,
    ],
    [
      `bulk ${bk.mib} MiB, SHA-256 checked, median of ${ROUNDS} (MiB/s)`,
      String(bk.mibS.viaA),
      String(bk.mibS.directB),
      `${Math.round(Number(result['throughputRatio']) * 100)} % of direct`,
    ],
  ];
  process.stdout.write(
    `\n| measure | through A (tunnel on B) | directly on B | hop |\n|---|---|---|---|\n${rows.map((r) => `| ${r.join(' | ')} |`).join('\n')}\n\n`,
  );
  const dir = join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `replica-forwarding-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    file,
    JSON.stringify(
      {
        started: started.toISOString(),
        seconds: round((performance.now() - t0) / 1000, 0),
        node: process.version,
        cpus: cpus().length,
        load,
        ...result,
      },
      null,
      2,
    ),
  );
  process.stdout.write(`wrote ${file}\n`);
  say(`done; ${load.after}`);
}

setTimeout(() => {
  say(`no result within ${RUN_DEADLINE_MS / 60_000} min; giving up`);
  process.exit(1);
}, RUN_DEADLINE_MS).unref();
main().then(
  // Exit explicitly: a client library may keep a socket or timer alive after the run.
  () => process.exit(0),
  (err: unknown) => {
    say(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
