/**
 * What the agent's start-up module graph costs (docs/benchmarks.md, "A lean agent"): starts the
 * BUILT agent (`apps/agent/dist/main.js`) in fresh `node --expose-gc` processes, alternating the
 * variants, and reports, after two forced GCs when the process exits, `process.memoryUsage()`
 * and the npm packages it loaded.
 *
 *   npx tsx e2e/bench/lean-agent-probe.ts [--runs=3] [--before=/path/to/an/older/apps/agent/dist]
 *                                         [--node-args="--max-semi-space-size=4"]
 *
 * Two stages per variant:
 * - `graph`: the modules `main.js` loads at start and nothing else (an invalid configuration makes
 *   it exit with 78 right after loading them);
 * - `app`: a valid configuration and an unreadable kubeconfig: the app is built (logger, metrics,
 *   listener objects) and the runtime fails at its first cluster call, so the process exits with 1
 *   before registering. Nothing is listening or connected in either stage.
 *
 * `--before` runs an older build in place of `apps/agent/dist` (a copy of that folder; it resolves
 * its packages from this checkout's node_modules through a symlink next to the copy's parent).
 *
 *   npx tsx e2e/bench/lean-agent-probe.ts --stream [--streams=1,4] [--mib=48]
 *
 * `--stream`: the bench system (startBenchSystem: control plane, built server and agent; agent
 * flags from BENCH_AGENT_NODE_ARGS), then for each count in `--streams` that many concurrent
 * `yes | head -c` streams of `--mib` MiB each on the agent path, sampling the agent's
 * `process.memoryUsage()` through its inspector every 100 ms: the peak of each field, RSS before
 * and after, agent CPU ms per MiB, whether every byte arrived, and `midGc_*`: the same fields
 * right after one forced full GC halfway through (what was live rather than garbage).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { cpuSeconds, forceGc, inspectorEval, procMem, round, sleep } from './bench-lib';
import { startBenchSystem } from './bench-system';
import { SystemBench } from './system-bench';

const root = resolve(__dirname, '../..');
const args = process.argv.slice(2);
const flag = (name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const runs = Number(flag('runs') ?? 3);
const before = flag('before');
const nodeArgs = (flag('node-args') ?? '').split(' ').filter((a) => a !== '');

const work = mkdtempSync(join(tmpdir(), 'lean-agent-probe-'));
const hook = join(work, 'exit-hook.js');
// On exit: two full GCs, then memoryUsage and the packages in the require cache.
writeFileSync(
  hook,
  `process.on('exit', () => {
  globalThis.gc(); globalThis.gc();
  const m = process.memoryUsage();
  const mib = (v) => Math.round((v / 1048576) * 10) / 10;
  const pkgs = new Set();
  for (const f of Object.keys(require.cache)) {
    const i = f.lastIndexOf('/node_modules/');
    if (i < 0) continue;
    const rest = f.slice(i + 14).split('/');
    pkgs.add(rest[0].startsWith('@') ? rest[0] + '/' + rest[1] : rest[0]);
  }
  require('node:fs').writeFileSync(process.env.PROBE_OUT, JSON.stringify({
    rss: mib(m.rss), heapUsed: mib(m.heapUsed), heapTotal: mib(m.heapTotal),
    external: mib(m.external), arrayBuffers: mib(m.arrayBuffers), modules: Object.keys(require.cache).length,
    packages: [...pkgs].sort(),
  }));
});
`,
);
const redirect = join(work, 'use-before.js');
if (before !== undefined) {
  if (!existsSync(join(before, 'main.js'))) throw new Error(`--before: no main.js in ${before}`);
  writeFileSync(
    redirect,
    `const Module = require('node:module');
const FROM = ${JSON.stringify(join(root, 'apps/agent/dist') + '/')};
const TO = ${JSON.stringify(resolve(before) + '/')};
const orig = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  const f = orig.call(this, request, ...rest);
  return f.startsWith(FROM) ? TO + f.slice(FROM.length) : f;
};
`,
  );
}

interface Sample {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  modules: number;
  packages: string[];
}

function run(variant: 'before' | 'after', stage: 'graph' | 'app'): Sample & { exit: number | null } {
  const out = join(work, `${variant}-${stage}.json`);
  rmSync(out, { force: true });
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '',
    PROBE_OUT: out,
    PERISCOPE_LOG_LEVEL: 'warn',
    PERISCOPE_AGENT_HEALTH_PORT: '19999',
    KUBECONFIG: join(work, 'no-such-kubeconfig'),
  };
  if (stage === 'app') {
    env['PERISCOPE_SERVER_URL'] = 'https://127.0.0.1:1';
    env['PERISCOPE_CLUSTER_NAME'] = 'probe';
  }
  const r = spawnSync(
    process.execPath,
    [
      '--expose-gc',
      ...nodeArgs,
      '-r',
      hook,
      ...(variant === 'before' ? ['-r', redirect] : []),
      join(root, 'apps/agent/dist/main.js'),
    ],
    { cwd: join(root, 'apps/agent'), env, encoding: 'utf8', timeout: 60_000 },
  );
  if (!existsSync(out))
    throw new Error(`${variant}/${stage}: no reading (exit ${String(r.status)}): ${r.stderr.slice(0, 500)}`);
  return { ...(JSON.parse(readFileSync(out, 'utf8')) as Sample), exit: r.status };
}

async function streamMode(): Promise<void> {
  const counts = (flag('streams') ?? '1,4').split(',').map(Number);
  const mib = Number(flag('mib') ?? 48);
  const say = (l: string): void => {
    process.stderr.write(`[probe] ${l}\n`);
  };
  const sys = await startBenchSystem({ log: say });
  const b = new SystemBench(sys, { quick: true, log: say });
  const out: Record<string, unknown>[] = [];
  try {
    await b.setup();
    const mem = async (): Promise<Record<string, number>> =>
      (await inspectorEval(sys.agentInspectorUrl, 'process.memoryUsage()')) as Record<string, number>;
    for (const n of counts) {
      const idle = procMem(sys.agentPid).rss;
      const peak: Record<string, number> = {};
      const sampling = { on: true };
      const sampler = (async () => {
        while (sampling.on) {
          const m = await mem().catch((): Record<string, number> => ({}));
          for (const [k, v] of Object.entries(m)) peak[k] = Math.max(peak[k] ?? 0, v / 1048576);
          peak['procRss'] = Math.max(peak['procRss'] ?? 0, procMem(sys.agentPid).rss);
          await sleep(100);
        }
      })();
      const cpu0 = cpuSeconds(sys.agentPid);
      const bytes = mib * 1024 * 1024;
      const t0 = performance.now();
      const streams = await Promise.all(
        Array.from({ length: n }, () =>
          b.open('server→agent', ['sh', '-c', `yes periscope-lean-agent-probe | head -c ${bytes}`]),
        ),
      );
      const deadline = Date.now() + 300_000;
      // Halfway, one forced full GC: what is left of the Buffers is live (in flight), the rest was garbage.
      let midGc: Record<string, number> | undefined;
      while (streams.some((s) => s.io.bytes < bytes) && Date.now() < deadline) {
        if (midGc === undefined && streams.every((s) => s.io.bytes >= bytes / 2)) {
          await forceGc(sys.agentInspectorUrl);
          midGc = await mem();
        }
        await sleep(20);
      }
      const secs = (performance.now() - t0) / 1000;
      const cpu = cpuSeconds(sys.agentPid) - cpu0;
      sampling.on = false;
      await sampler;
      const ok = streams.every((s) => s.io.bytes === bytes);
      for (const s of streams) await s.close();
      await sleep(2000);
      const row = {
        streams: n,
        mibEach: mib,
        ok,
        mibS: round((n * mib) / secs, 1),
        agentCpuMsPerMiB: round((cpu * 1000) / (n * mib), 2),
        rssBefore: idle,
        rssAfter: procMem(sys.agentPid).rss,
        ...Object.fromEntries(Object.entries(peak).map(([k, v]) => [`peak_${k}`, round(v, 1)])),
        ...Object.fromEntries(
          Object.entries(midGc ?? {}).map(([k, v]) => [`midGc_${k}`, round(v / 1048576, 1)]),
        ),
      };
      say(JSON.stringify(row));
      out.push(row);
    }
  } finally {
    await sys.stop();
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function graphMode(): void {
  const variants: ('before' | 'after')[] = before !== undefined ? ['before', 'after'] : ['after'];
  const results: Record<string, (Sample & { exit: number | null })[]> = {};
  for (let i = 0; i < runs; i++)
    for (const stage of ['graph', 'app'] as const)
      for (const v of i % 2 === 0 ? variants : [...variants].reverse()) {
        const s = run(v, stage);
        (results[`${v} ${stage}`] ??= []).push(s);
        process.stderr.write(
          `[probe] run ${i + 1} ${v} ${stage}: exit ${String(s.exit)} rss ${s.rss} heapUsed ${s.heapUsed} heapTotal ${s.heapTotal} modules ${s.modules}\n`,
        );
      }

  const range = (xs: number[]): string => {
    const lo = Math.min(...xs);
    const hi = Math.max(...xs);
    return lo === hi ? String(lo) : `${lo}–${hi}`;
  };
  process.stdout.write(
    `\n| variant, stage | runs | heapUsed (MiB) | heapTotal (MiB) | RSS (MiB) | modules | packages |\n|---|---|---|---|---|---|---|\n`,
  );
  for (const [k, xs] of Object.entries(results)) {
    process.stdout.write(
      `| ${k} | ${xs.length} | ${range(xs.map((x) => x.heapUsed))} | ${range(xs.map((x) => x.heapTotal))} | ${range(xs.map((x) => x.rss))} | ${range(xs.map((x) => x.modules))} | ${xs[0]?.packages.length ?? 0} |\n`,
    );
  }
  for (const [k, xs] of Object.entries(results))
    process.stdout.write(`\n${k} packages: ${(xs[0]?.packages ?? []).join(', ')}\n`);
  rmSync(work, { recursive: true, force: true });
}

const done = args.includes('--stream')
  ? streamMode()
  : Promise.resolve().then(() => {
      graphMode();
    });
done.then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
