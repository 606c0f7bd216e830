/**
 * The cost of session recording (issue 19) on the full path, side by side in one run: the BUILT
 * server (and agent) against the local control plane, started once per recording mode
 * (PERISCOPE_SESSION_RECORDING=off, output, output+input), each time measuring
 *
 * - bulk output throughput of a pod exec (`yes | head -c`, tty off, SHA-256 checked) through
 *   server→local (kubeconfig) and server→agent (tunnel), best of the rounds, and `direct`
 *   (this process straight to the apiserver, no server) as the machine's baseline of that run;
 * - the keystroke round trip (`cat`, one byte at a time) through the same paths, round-robin.
 *
 * Costs are each mode's against `off`: throughput in % (raw, and normalised by the run's direct
 * baseline, since the machine is shared and its load moves between runs) and keystroke p50 in ms.
 * Goals (issue 19): ≤ 5 % throughput, ≤ 0.2 ms added keystroke p50.
 *
 *   npx tsx e2e/bench/recording-system-bench.ts [--quick] [--mib=64] [--rounds=2] [--samples=150]
 *                                              [--modes=off,output,output+input]
 *
 * Writes e2e/bench/results/recording-system-<time>.json (`npm run bench` runs it as the
 * `recording` step, after the in-process recording-bench.ts).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { dist, keystroke, round, sleep, type Dist } from './bench-lib';
import { startBenchSystem } from './bench-system';
import { SystemBench, type PathName } from './system-bench';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = args.includes('--quick');
const MIB = Number(flag('mib') ?? (quick ? 48 : 128));
const ROUNDS = Number(flag('rounds') ?? (quick ? 2 : 3));
const SAMPLES = Number(flag('samples') ?? (quick ? 100 : 300));
const MODES = (flag('modes') ?? 'off,output,output+input').split(',').filter((m) => m !== '');
const PATHS: PathName[] = ['direct', 'server→local', 'server→agent'];
const SERVER_PATHS = ['server→local', 'server→agent'] as const;
export const GOALS = { throughputCostPct: 5, keystrokeAddedP50Ms: 0.2 };

const t0 = performance.now();
const say = (l: string): void => {
  process.stderr.write(
    `[recording-system ${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${l}\n`,
  );
};

export interface ModeRun {
  mode: string;
  /** best MiB/s per path */
  mibPerSecond: Record<PathName, number>;
  /** every run's MiB/s per path */
  runs: Record<PathName, number[]>;
  checksumsOk: boolean;
  keystroke: Record<PathName, Dist>;
}

const LINE = 'periscope-bench-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

async function measure(mode: string): Promise<ModeRun> {
  say(`mode ${mode}: starting control plane + server + agent (PERISCOPE_SESSION_RECORDING=${mode})`);
  const sys = await startBenchSystem({
    env: {
      PERISCOPE_SESSION_RECORDING: mode,
      // every bulk run recorded whole (no truncation, which would end the recording's cost)
      PERISCOPE_RECORDING_MAX_SESSION_MB: String(MIB * 2 + 64),
      PERISCOPE_RECORDING_MAX_TOTAL_MB: String((MIB * 2 + 64) * ROUNDS * 3),
      PERISCOPE_EXEC_MAX_SESSIONS_PER_USER: '100',
    },
    log: say,
  });
  const b = new SystemBench(sys, { quick, log: say });
  try {
    await b.setup();
    // Keystrokes first, idle, round-robin over the paths.
    const echo = Object.fromEntries(
      await Promise.all(PATHS.map(async (p) => [p, await b.open(p, ['cat'])])),
    ) as Record<PathName, Awaited<ReturnType<SystemBench['open']>>>;
    const byte = (i: number): number => 97 + (i % 26);
    for (const p of PATHS) for (let i = 0; i < 10; i++) await keystroke(echo[p].io, byte(i));
    const rtt: Record<PathName, number[]> = { direct: [], 'server→local': [], 'server→agent': [] };
    say(`mode ${mode}: ${SAMPLES} keystrokes per path`);
    for (let i = 0; i < SAMPLES; i++)
      for (const p of PATHS) {
        rtt[p].push(await keystroke(echo[p].io, byte(i)));
        await sleep(5);
      }
    for (const p of PATHS) await echo[p].close();

    // Bulk: rounds over the paths.
    const bytes = MIB * 1024 * 1024;
    let full = '';
    while (full.length < 1 << 16) full += `${LINE}\n`;
    const expected = createHash('sha256');
    for (let left = bytes; left > 0; left -= Math.min(left, full.length))
      expected.update(full.slice(0, Math.min(left, full.length)));
    const sha = expected.digest('hex');
    const runs: Record<PathName, number[]> = { direct: [], 'server→local': [], 'server→agent': [] };
    let checksumsOk = true;
    for (let r = 0; r < ROUNDS; r++)
      for (const p of PATHS) {
        say(`mode ${mode}: throughput ${p} round ${r + 1}/${ROUNDS}, ${MIB} MiB`);
        const hash = createHash('sha256');
        const s = await b.open(p, ['sh', '-c', `yes '${LINE}' | head -c ${bytes}`]);
        s.io.onData = (d) => {
          hash.update(d);
        };
        const deadline = Date.now() + 180_000;
        while (s.io.bytes < bytes && Date.now() < deadline) await sleep(20);
        const secs = ((s.io.lastByteAt ?? 0) - (s.io.firstByteAt ?? 0)) / 1000;
        if (s.io.bytes !== bytes || hash.digest('hex') !== sha) {
          // incomplete (the deadline) or wrong bytes: no throughput from it
          checksumsOk = false;
          say(
            `mode ${mode}: ${p} got ${s.io.bytes} of ${bytes} bytes${s.io.bytes === bytes ? ', SHA-256 MISMATCH' : ''}`,
          );
          runs[p].push(0);
        } else runs[p].push(round(MIB / secs, 1));
        await s.close();
        await sleep(300);
      }
    return {
      mode,
      mibPerSecond: Object.fromEntries(PATHS.map((p) => [p, Math.max(...runs[p])])) as Record<
        PathName,
        number
      >,
      runs,
      checksumsOk,
      keystroke: Object.fromEntries(PATHS.map((p) => [p, dist(rtt[p])])) as Record<PathName, Dist>,
    };
  } finally {
    say(`mode ${mode}: stopping the system`);
    await sys.stop();
  }
}

export interface ModeCost {
  mode: string;
  path: string;
  mibPerSecond: number;
  offMiBPerSecond: number;
  /** 100 × (1 − on / off) */
  throughputCostPct: number;
  /** the same with each run's MiB/s divided by its run's direct MiB/s (machine load factored out) */
  throughputCostPctNormalised: number;
  keystrokeP50: number;
  offKeystrokeP50: number;
  keystrokeAddedP50Ms: number;
  met: { throughput: boolean; keystroke: boolean };
}

/** Each recording mode's cost against `off`, per server path. */
export function costs(runs: ModeRun[]): ModeCost[] {
  const off = runs.find((r) => r.mode === 'off');
  if (!off) return [];
  const out: ModeCost[] = [];
  for (const r of runs) {
    if (r.mode === 'off') continue;
    for (const p of SERVER_PATHS) {
      const cost = round(100 * (1 - r.mibPerSecond[p] / off.mibPerSecond[p]), 1);
      const norm = round(
        100 *
          (1 - r.mibPerSecond[p] / r.mibPerSecond.direct / (off.mibPerSecond[p] / off.mibPerSecond.direct)),
        1,
      );
      const added = round(r.keystroke[p].p50 - off.keystroke[p].p50, 3);
      out.push({
        mode: r.mode,
        path: p,
        mibPerSecond: r.mibPerSecond[p],
        offMiBPerSecond: off.mibPerSecond[p],
        throughputCostPct: cost,
        throughputCostPctNormalised: norm,
        keystrokeP50: r.keystroke[p].p50,
        offKeystrokeP50: off.keystroke[p].p50,
        keystrokeAddedP50Ms: added,
        met: {
          throughput: Math.min(cost, norm) <= GOALS.throughputCostPct,
          keystroke: added <= GOALS.keystrokeAddedP50Ms,
        },
      });
    }
  }
  return out;
}

async function main(): Promise<void> {
  const started = new Date();
  const runs: ModeRun[] = [];
  for (const mode of MODES) runs.push(await measure(mode));
  const table = costs(runs);
  for (const c of table)
    say(
      `${c.mode} ${c.path}: ${c.mibPerSecond} vs ${c.offMiBPerSecond} MiB/s off (cost ${c.throughputCostPct} %, normalised ${c.throughputCostPctNormalised} %), keystroke p50 ${c.keystrokeP50} vs ${c.offKeystrokeP50} ms (+${c.keystrokeAddedP50Ms})`,
    );
  const results = {
    started: started.toISOString(),
    seconds: round((performance.now() - t0) / 1000, 0),
    mib: MIB,
    rounds: ROUNDS,
    samples: SAMPLES,
    runs,
    costs: table,
    goals: GOALS,
    checksumsOk: runs.every((r) => r.checksumsOk),
  };
  const dir = join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `recording-system-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(results, null, 2));
  process.stdout.write(`wrote ${file}\n`);
  process.exit(0);
}

if (require.main === module)
  main().catch((err: unknown) => {
    say(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  });

/** Rows for `npm run bench`'s table: measure, server→local, server→agent, direct, goal, verdict. */
export function recordingSystemRows(result: unknown): [string, string, string, string, string, string][] {
  const r = result as { mib: number; runs: ModeRun[]; costs: ModeCost[]; checksumsOk: boolean } | undefined;
  if (!r?.costs) return [];
  const verdict = (ok: boolean): string => (ok ? '**met**' : '**not met**');
  const rows: [string, string, string, string, string, string][] = [];
  for (const m of r.runs)
    rows.push([
      `recording ${m.mode}, full path: bulk ${r.mib} MiB best (MiB/s) · keystroke p50 (ms)`,
      `${m.mibPerSecond['server→local']} · ${m.keystroke['server→local'].p50}`,
      `${m.mibPerSecond['server→agent']} · ${m.keystroke['server→agent'].p50}`,
      `${m.mibPerSecond.direct} · ${m.keystroke.direct.p50}`,
      '',
      m.checksumsOk ? 'sha256 ok' : '**sha256 MISMATCH**',
    ]);
  for (const mode of [...new Set(r.costs.map((c) => c.mode))]) {
    const cell = (p: string, f: (c: ModeCost) => string): string => {
      const c = r.costs.find((x) => x.mode === mode && x.path === p);
      return c ? f(c) : '—';
    };
    const of = r.costs.filter((c) => c.mode === mode);
    rows.push([
      `→ recording ${mode} vs off: throughput cost % (normalised by direct)`,
      cell('server→local', (c) => `${c.throughputCostPct} (${c.throughputCostPctNormalised})`),
      cell('server→agent', (c) => `${c.throughputCostPct} (${c.throughputCostPctNormalised})`),
      '',
      `≤ ${GOALS.throughputCostPct} %`,
      verdict(of.every((c) => c.met.throughput)),
    ]);
    rows.push([
      `→ recording ${mode} vs off: added keystroke p50 (ms)`,
      cell('server→local', (c) => String(c.keystrokeAddedP50Ms)),
      cell('server→agent', (c) => String(c.keystrokeAddedP50Ms)),
      '',
      `≤ ${GOALS.keystrokeAddedP50Ms} ms`,
      verdict(of.every((c) => c.met.keystroke)),
    ]);
  }
  return rows;
}
