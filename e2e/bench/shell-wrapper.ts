/**
 * Start-up cost of the shell image's programs, measured side by side in one run (the machines are
 * shared and noisy: compare within a run, not across runs).
 *
 *   npx tsx e2e/bench/shell-wrapper.ts [runs=40] [--json out.json]
 *
 * Prints a table and writes JSON (default: e2e/bench/results/shell-wrapper-<time>.json).
 *
 * Rows, each run interleaved with the others:
 * - `kubectl-real version --client` called directly (the real binary, as the image ships it);
 * - the same through the audit wrapper (`kubectl` symlink → periscope-audit-exec), audit file on;
 * - the wrapper alone (`oc` refused with 127: start, dispatch, exit, no child);
 * - `periscope-shell --help` (start and exit of the session program);
 * - `node -e 0` (the runtime's own start, the floor of both programs).
 * The added latency of the wrapper is the median of per-run differences wrapper − direct.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { ensureBinaries } from '../k8s/binaries';
import { bundleShellPrograms } from '../shell/image-layout';

const args = process.argv.slice(2);
const jsonAt = args.indexOf('--json');
const jsonOut =
  (jsonAt >= 0 ? args[jsonAt + 1] : undefined) ??
  join(__dirname, 'results', `shell-wrapper-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
const runs = Number(args.find((a, i) => /^\d+$/.test(a) && (jsonAt < 0 || i !== jsonAt + 1)) ?? 40);

const work = mkdtempSync(join(tmpdir(), 'periscope-bench-shell-'));
try {
  const bundles = bundleShellPrograms(join(work, 'dist'));
  const wrapper = bundles['periscope-audit-exec']!;
  const shell = bundles['periscope-shell']!;
  const bin = join(work, 'bin');
  const real = join(work, 'real');
  mkdirSync(bin);
  mkdirSync(real);
  const kubectlReal = join(real, 'kubectl-real');
  symlinkSync(realpathSync(ensureBinaries({ quiet: true }).kubectl), kubectlReal);
  symlinkSync(wrapper, join(bin, 'kubectl'));
  symlinkSync(wrapper, join(bin, 'oc'));
  const auditFile = join(work, 'audit', 'audit.jsonl');
  const env = {
    ...process.env,
    PERISCOPE_AUDIT_EXEC_REAL_DIR: real,
    PERISCOPE_SHELL_AUDIT_FILE: auditFile,
    PERISCOPE_SHELL_SESSION_ID: 'bench',
  };

  const cases: Record<string, { cmd: string; args: string[]; expect: number }> = {
    'kubectl-real version --client (direct)': { cmd: kubectlReal, args: ['version', '--client'], expect: 0 },
    'kubectl version --client (through wrapper)': {
      cmd: join(bin, 'kubectl'),
      args: ['version', '--client'],
      expect: 0,
    },
    'periscope-audit-exec alone (refusal, no child)': { cmd: join(bin, 'oc'), args: [], expect: 127 },
    'periscope-shell --help': { cmd: shell, args: ['--help'], expect: 0 },
    'node -e 0 (runtime floor)': { cmd: process.execPath, args: ['-e', '0'], expect: 0 },
  };
  const names = Object.keys(cases);
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));

  const time = (name: string): number => {
    const c = cases[name]!;
    const t0 = process.hrtime.bigint();
    const r = spawnSync(c.cmd, c.args, { env, stdio: 'ignore' });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== c.expect) throw new Error(`${name}: exit ${String(r.status)} (expected ${c.expect})`);
    return ms;
  };
  for (const name of names) time(name); // warm the page cache
  for (let i = 0; i < runs; i++) for (const name of names) samples[name]!.push(time(name));

  const pct = (xs: number[], p: number): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
  };
  const direct = samples[names[0]!]!;
  const wrapped = samples[names[1]!]!;
  const added = wrapped.map((w, i) => w - direct[i]!);
  const rows = names.map((name) => ({ name, p50: pct(samples[name]!, 50), p95: pct(samples[name]!, 95) }));
  rows.push({ name: 'added by the wrapper (paired difference)', p50: pct(added, 50), p95: pct(added, 95) });

  const width = Math.max(...rows.map((r) => r.name.length));
  console.log(`node ${process.version}, ${runs} runs each, interleaved\n`);
  console.log(`${'case'.padEnd(width)}  p50 ms  p95 ms`);
  for (const r of rows)
    console.log(`${r.name.padEnd(width)}  ${r.p50.toFixed(1).padStart(6)}  ${r.p95.toFixed(1).padStart(6)}`);
  const goal = pct(added, 50) < 100;
  console.log(`\ngoal: wrapper adds < 100 ms p50 -> ${goal ? 'met' : 'MISSED'}`);
  mkdirSync(dirname(jsonOut), { recursive: true });
  writeFileSync(
    jsonOut,
    JSON.stringify({ node: process.version, runs, rows, goalMet: goal }, null, 2) + '\n',
  );
  console.log(`results: ${jsonOut}`);
  if (!goal) process.exitCode = 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
