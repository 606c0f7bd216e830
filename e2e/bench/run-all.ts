/**
 * `npm run bench`: every benchmark in one run, side by side, with a table on stdout and JSON in
 * e2e/bench/results/bench-<time>.json (the tunnel and shell-wrapper benchmarks also write their
 * own files there, as when run alone).
 *
 *   npx tsx e2e/bench/run-all.ts [--quick] [--only=tunnel,shell,recording,forwarded,keystroke,throughput,stalled,open,capacity]
 *                                [--agents=200] [--sessions=200] [--session-clusters=local-agent,local]
 *                                [--mib=192] [--rounds=2]   (throughput size and rounds)
 *                                [--keystrokes-idle-only]   (no keystrokes under bulk: a quick latency A/B)
 *
 * Runs against the BUILT server and agent (`npm run build` first when the sources changed; the
 * `forwarded` step, three in-process replicas, runs from the sources). Every
 * step is bounded; the full run takes about 3 minutes on 2 cores, `--quick` about 1.5.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';

import { forceGc, procMem, round, sleep } from './bench-lib';
import { startBenchSystem } from './bench-system';
import { recordingSystemRows } from './recording-system-bench';
import { SystemBench, type PathName } from './system-bench';

const root = resolve(__dirname, '../..');
const args = process.argv.slice(2);
const flag = (name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = args.includes('--quick');
const only = new Set(
  (flag('only') ?? 'tunnel,shell,recording,forwarded,idle,keystroke,throughput,stalled,open,capacity')
    .split(',')
    .filter((s) => s !== ''),
);
const agentCount = Number(flag('agents') ?? (quick ? 50 : 200));
const sessionCount = Number(flag('sessions') ?? (quick ? 50 : 200));
const sessionClusters = (flag('session-clusters') ?? (quick ? 'local-agent' : 'local-agent,local')).split(
  ',',
);

const t0 = performance.now();
const say = (l: string): void => {
  process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${l}\n`);
};
const uptime = (): string => {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return readFileSync('/proc/loadavg', 'utf8').trim();
  }
};

/** Runs another benchmark script with tsx; answers the JSON file it says it wrote. */
function runChild(script: string, scriptArgs: string[], env: Record<string, string>, timeoutMs: number) {
  return new Promise<Record<string, unknown>>((resolveRun, reject) => {
    const child = spawn(
      process.execPath,
      [join(root, 'node_modules/tsx/dist/cli.mjs'), script, ...scriptArgs],
      {
        cwd: root,
        // tsconfig.base.json: experimentalDecorators for the server's Nest classes (tsx reads no
        // tsconfig at the root otherwise)
        env: { TSX_TSCONFIG_PATH: join(root, 'tsconfig.base.json'), ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      process.stderr.write(d);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const file = /wrote (\S+\.json)/.exec(out)?.[1];
      if (code !== 0 || file === undefined) {
        reject(new Error(`${script} exited ${String(code)}`));
        return;
      }
      resolveRun(JSON.parse(readFileSync(resolve(root, file), 'utf8')) as Record<string, unknown>);
    });
  });
}

/** Names the projects whose newest source file is newer than their newest built file. */
function staleBuild(): string[] {
  const newest = (dir: string, suffix: string): number => {
    let t = 0;
    const walk = (d: string): void => {
      for (const e of readdirSafe(d)) {
        const p = join(d, e);
        const s = statSync(p);
        if (s.isDirectory()) walk(p);
        else if (p.endsWith(suffix) && !p.endsWith('.spec.ts')) t = Math.max(t, s.mtimeMs);
      }
    };
    walk(dir);
    return t;
  };
  return [
    'apps/server',
    'apps/agent',
    'libs/protocol',
    'libs/cluster-ops',
    'libs/config',
    'libs/observability',
  ].filter(
    (p) =>
      !existsSync(join(root, p, 'dist')) ||
      newest(join(root, p, 'src'), '.ts') > newest(join(root, p, 'dist'), '.js'),
  );
}
function readdirSafe(d: string): string[] {
  try {
    return readdirSync(d);
  } catch {
    return [];
  }
}

type Row = [measure: string, local: string, agent: string, direct: string, goal: string, verdict: string];

async function main(): Promise<void> {
  const started = new Date();
  const load = { before: uptime(), after: '' };
  say(`mode ${quick ? 'quick' : 'full'}; ${load.before}`);
  const stale = staleBuild();
  if (stale.length > 0)
    say(`WARNING: sources newer than the build in ${stale.join(', ')}; run npm run build`);
  const all: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  const step = async (name: string, fn: () => Promise<void>): Promise<void> => {
    if (!only.has(name)) return;
    try {
      await fn();
    } catch (err) {
      errors[name] = err instanceof Error ? (err.stack ?? err.message) : String(err);
      say(`${name} failed: ${errors[name]}`);
    }
  };

  // The in-process benchmarks first, before the system's processes exist.
  await step('tunnel', async () => {
    say('tunnel benchmark (raw ws vs tunnel, one process)');
    all['tunnel'] = await runChild(
      'e2e/bench/tunnel-bench.ts',
      [],
      { BENCH_SAMPLES: quick ? '100' : '200', BENCH_BULK_MIB: quick ? '256' : '1024' },
      180_000,
    );
  });
  await step('shell', async () => {
    say('shell wrapper start-up benchmark');
    const file = join(
      __dirname,
      'results',
      `shell-wrapper-${started.toISOString().replace(/[:.]/g, '-')}.json`,
    );
    all['shellWrapper'] = await runChild(
      'e2e/bench/shell-wrapper.ts',
      [quick ? '10' : '20', '--json', file],
      {},
      180_000,
    ).catch(() => JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>);
  });

  await step('recording', async () => {
    say('session recording on vs off (one process: session, socket, recorder)');
    all['recording'] = await runChild(
      'e2e/bench/recording-bench.ts',
      [`--mib=${quick ? 128 : 512}`, `--samples=${quick ? 200 : 1000}`],
      {},
      180_000,
    );
    say('session recording off / output / output+input on the full path (built server, one system per mode)');
    all['recordingSystem'] = await runChild(
      'e2e/bench/recording-system-bench.ts',
      quick ? ['--quick'] : [],
      {},
      1_200_000,
    );
  });

  await step('forwarded', async () => {
    say('forwarding between replicas: through replica A (agent tunnel on B) vs directly on B');
    all['forwarded'] = await runChild(
      'e2e/bench/replica-forwarding-bench.ts',
      [`--samples=${quick ? 100 : 300}`, `--rounds=${quick ? 2 : 5}`],
      {},
      900_000,
    );
  });

  const systemSteps = ['idle', 'keystroke', 'throughput', 'stalled', 'open', 'capacity'].filter((s) =>
    only.has(s),
  );
  if (systemSteps.length > 0) {
    const agents = only.has('capacity')
      ? Array.from({ length: agentCount }, (_, i) => `bench-agent-${String(i + 1).padStart(3, '0')}`)
      : [];
    say('starting control plane + server + agent');
    const sys = await startBenchSystem({
      extraAgentClusters: agents,
      env: {
        PERISCOPE_EXEC_MAX_SESSIONS_PER_USER: '1000',
        PERISCOPE_EXEC_MAX_SESSIONS_TOTAL: '10000',
        PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER: '100',
        PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_TOTAL: '100',
      },
      log: say,
      processLog: (l) => {
        if (process.env['BENCH_VERBOSE'] !== undefined) process.stderr.write(`${l}\n`);
      },
    });
    const mib = flag('mib');
    const rounds = flag('rounds');
    const b = new SystemBench(sys, {
      quick,
      log: say,
      ...(mib !== undefined ? { mib: Number(mib) } : {}),
      ...(rounds !== undefined ? { rounds: Number(rounds) } : {}),
      ...(args.includes('--keystrokes-idle-only') ? { keystrokesUnderBulk: false } : {}),
    });
    try {
      // Before any session: the agent has registered and connected its tunnel, nothing more.
      await step('idle', async () => {
        all['idle'] = await idleMemory(sys, quick ? 5_000 : 15_000);
      });
      await b.setup();
      await step('keystroke', () => b.keystrokes());
      await step('throughput', () => b.throughput());
      await step('stalled', () => b.stalled());
      await step('open', () => b.openTime());
      await step('capacity', () => b.capacity(agents, sessionClusters, sessionCount));
    } finally {
      Object.assign(all, b.results);
      say('stopping the system');
      await sys.stop();
    }
  }
  load.after = uptime();
  const seconds = round((performance.now() - t0) / 1000, 0);
  say(`done in ${seconds} s; ${load.after}`);

  const rows = table(all);
  const md = [
    '| measure | server→local (kubeconfig) | server→agent (tunnel) | direct / baseline | goal | verdict |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
  process.stdout.write(`\n${md}\n\n`);
  // Issue 24's rows, side by side with the Go original's numbers (built from the steps above).
  const goals = issue24Table(all);
  if (goals.length > 0)
    process.stdout.write(
      `Issue 24, against direct exec and the Go original:\n\n${[
        `| measure, pod exec | direct exec | this run | goal | verdict | ${GO_REFERENCE_LABEL} |`,
        '|---|---|---|---|---|---|',
        ...goals.map((r) => `| ${r.join(' | ')} |`),
      ].join('\n')}\n\n`,
    );
  const dir = join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `bench-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    file,
    JSON.stringify(
      {
        started: started.toISOString(),
        seconds,
        mode: quick ? 'quick' : 'full',
        node: process.version,
        cpus: cpus().length,
        load,
        results: all,
        table: rows,
        issue24: goals,
        errors,
      },
      null,
      2,
    ),
  );
  process.stdout.write(`wrote ${file}\n`);
  // Exit explicitly: a client library may keep a socket or timer alive after the run.
  process.exit(Object.keys(errors).length > 0 ? 1 : 0);
}

/**
 * RSS of the server and the agent once they are up and idle (the agent registered and connected,
 * no session yet): after `idleMs` without a forced GC (what an operator sees), then after two
 * forced full GCs through their inspectors.
 */
async function idleMemory(
  sys: { serverPid: number; agentPid: number; inspectorUrl: string; agentInspectorUrl: string },
  idleMs: number,
): Promise<{
  idleMs: number;
  noGc: { server: number; agent: number };
  afterGc: { server: number; agent: number };
}> {
  say(`idle memory: ${idleMs / 1000} s idle, then a forced GC`);
  await sleep(idleMs);
  const read = (): { server: number; agent: number } => ({
    server: round(procMem(sys.serverPid).rss, 1),
    agent: round(procMem(sys.agentPid).rss, 1),
  });
  const noGc = read();
  await forceGc(sys.inspectorUrl);
  await forceGc(sys.agentInspectorUrl);
  return { idleMs, noGc, afterGc: read() };
}

// ---------------------------------------------------------------- the table
type Dist = { p50: number; p95: number; p99: number };
const fmt = (d: Dist | undefined): string => (d ? `${d.p50} / ${d.p95} / ${d.p99}` : '—');
const verdict = (ok: boolean | undefined): string =>
  ok === undefined ? '—' : ok ? '**met**' : '**not met**';

function table(all: Record<string, unknown>): Row[] {
  const rows: Row[] = [];
  const idle = all['idle'] as
    | { idleMs: number; noGc: { server: number; agent: number }; afterGc: { server: number; agent: number } }
    | undefined;
  if (idle) {
    rows.push([
      `idle RSS after ${idle.idleMs / 1000} s · after a forced GC, server / agent (MiB)`,
      '',
      `${idle.noGc.server} · ${idle.afterGc.server} / ${idle.noGc.agent} · ${idle.afterGc.agent}`,
      'Go original: agent 43–46 peak',
      'agent ≤ 64 MiB',
      verdict(idle.noGc.agent <= 64),
    ]);
  }
  type Variant = {
    samples: number;
    rtt: Record<PathName, Dist>;
    added: Record<string, Dist>;
    bulkMiBs: Record<PathName, number>;
    ourCpuPct: number;
    machineBusyPct: number;
    loop?: { server: { p99: number; max: number }; agent: { p99: number; max: number } };
  };
  const ks = all['keystroke'] as
    | {
        samplesIdle: number;
        idle: Record<PathName, Dist>;
        addedIdle: Record<string, Dist>;
        underBulk?: Variant;
        underPacedBulk?: Variant;
      }
    | undefined;
  if (ks) {
    const ok = (a: Record<string, Dist>): boolean =>
      ['server→local', 'server→agent'].every(
        (p) => (a[p]?.p50 ?? Infinity) <= 2 && (a[p]?.p99 ?? Infinity) <= 10,
      );
    const goal = 'added p50 ≤ 2, p99 ≤ 10';
    rows.push([
      `keystroke RTT idle, ${ks.samplesIdle} samples, p50 / p95 / p99 (ms)`,
      fmt(ks.idle['server→local']),
      fmt(ks.idle['server→agent']),
      fmt(ks.idle.direct),
      '',
      '',
    ]);
    rows.push([
      '→ added latency idle (ms)',
      fmt(ks.addedIdle['server→local']),
      fmt(ks.addedIdle['server→agent']),
      '0',
      goal,
      verdict(ok(ks.addedIdle)),
    ]);
    for (const [label, v] of [
      ['under bulk read as fast as possible', ks.underBulk],
      ['under paced bulk (≈ 17 MiB/s per session)', ks.underPacedBulk],
    ] as const) {
      if (!v) continue;
      rows.push([
        `keystroke RTT ${label}, ${v.samples} samples, p50 / p95 / p99 (ms)`,
        fmt(v.rtt['server→local']),
        fmt(v.rtt['server→agent']),
        fmt(v.rtt.direct),
        '',
        '',
      ]);
      rows.push([
        `→ added latency ${label} (ms)`,
        fmt(v.added['server→local']),
        fmt(v.added['server→agent']),
        '0',
        goal,
        verdict(ok(v.added)),
      ]);
      rows.push([
        `→ bulk MiB/s meanwhile (our processes ${v.ourCpuPct} % of one core; machine ${v.machineBusyPct} % busy)`,
        String(v.bulkMiBs['server→local']),
        String(v.bulkMiBs['server→agent']),
        String(v.bulkMiBs.direct),
        '',
        '',
      ]);
      if (v.loop)
        rows.push([
          '→ event-loop delay meanwhile, server · agent, p99 / max (ms; 10 = the idle timer)',
          `server ${v.loop.server.p99} / ${v.loop.server.max}`,
          `server ${v.loop.server.p99} / ${v.loop.server.max} · agent ${v.loop.agent.p99} / ${v.loop.agent.max}`,
          '',
          '',
          '',
        ]);
    }
  }
  const tp = all['throughput'] as
    | {
        mib: number;
        bestMiBs: Record<PathName, number>;
        ratioToDirect: Record<string, number>;
        checksumsOk: boolean;
        runs: Partial<
          Record<
            PathName,
            {
              serverPeak: number;
              agentPeak: number;
              serverGrowth: number;
              agentGrowth: number;
              avgMessageKiB: number;
              cpuMsPerMiB: Record<string, number>;
            }[]
          >
        >;
      }
    | undefined;
  if (tp) {
    const r = tp.ratioToDirect;
    const pctOf = (p: string): string => `${Math.round((r[p] ?? 0) * 100)} %`;
    rows.push([
      `bulk output ${tp.mib} MiB, best run (MiB/s), sha256 ${tp.checksumsOk ? 'ok' : 'MISMATCH'}`,
      `${tp.bestMiBs['server→local']} (${pctOf('server→local')})`,
      `${tp.bestMiBs['server→agent']} (${pctOf('server→agent')})`,
      String(tp.bestMiBs.direct),
      '≥ 80 % of direct',
      verdict((r['server→local'] ?? 0) >= 0.8 && (r['server→agent'] ?? 0) >= 0.8 && tp.checksumsOk),
    ]);
    const peak = (p: PathName, k: 'serverPeak' | 'agentPeak' | 'serverGrowth' | 'agentGrowth'): number =>
      Math.max(...(tp.runs[p] ?? []).map((x) => x[k]));
    const rssCell = (p: PathName): string =>
      `${peak(p, 'serverPeak')} (+${peak(p, 'serverGrowth')}) / ${peak(p, 'agentPeak')} (+${peak(p, 'agentGrowth')})`;
    rows.push([
      'peak RSS during bulk (growth in the run), server / agent (MiB)',
      rssCell('server→local'),
      rssCell('server→agent'),
      `${rssCell('direct')} (idle)`,
      '',
      '',
    ]);
    const cpuCell = (p: PathName): string => {
      const c = tp.runs[p]?.[0]?.cpuMsPerMiB;
      if (!c) return '—';
      const total = Object.values(c).reduce((a, b) => a + b, 0);
      return `${round(total, 1)}: ${['server', 'agent', 'apiserver', 'node', 'bench'].map((n) => `${n === 'bench' ? 'client' : n} ${c[n] ?? '—'}`).join(' · ')}`;
    };
    const msg = (p: PathName): string => String(tp.runs[p]?.[0]?.avgMessageKiB ?? '—');
    rows.push([
      'average output message at the client (KiB)',
      msg('server→local'),
      msg('server→agent'),
      msg('direct'),
      '',
      '',
    ]);
    // Mean CPU cost per MiB of each process over the runs of a path; the slowest stage bounds
    // the pipeline when every process has a core of its own (as across machines).
    const meanCpu = (p: PathName): Record<string, number> => {
      const rs = tp.runs[p] ?? [];
      const out: Record<string, number> = {};
      for (const r of rs)
        for (const [k, v] of Object.entries(r.cpuMsPerMiB)) out[k] = (out[k] ?? 0) + v / rs.length;
      return out;
    };
    const bound = (p: PathName): number => {
      const c = meanCpu(p);
      return round(1000 / Math.max(...['server', 'agent', 'apiserver', 'node'].map((k) => c[k] ?? 0)), 0);
    };
    const bd = bound('direct');
    rows.push([
      'pipeline bound with a core per process (1000 / slowest stage ms per MiB, client excluded)',
      `${bound('server→local')} (${Math.round((100 * bound('server→local')) / bd)} %)`,
      `${bound('server→agent')} (${Math.round((100 * bound('server→agent')) / bd)} %)`,
      String(bd),
      '',
      '',
    ]);
    rows.push([
      'CPU ms per MiB during bulk (first run), total: per process',
      cpuCell('server→local'),
      cpuCell('server→agent'),
      cpuCell('direct'),
      '',
      '',
    ]);
  }
  const st = all['stalled'] as
    | Record<
        string,
        {
          seconds: number;
          rssGrowthPeakMiB: { server: number; agent: number };
          rssGrowthSecondHalfMiB: { server: number; agent: number };
          otherSessionKeystrokes: Dist;
        }
      >
    | undefined;
  if (st) {
    const cell = (p: string): string => {
      const s = st[p];
      return s
        ? `server +${s.rssGrowthPeakMiB.server} peak, ${s.rssGrowthSecondHalfMiB.server >= 0 ? '+' : ''}${s.rssGrowthSecondHalfMiB.server} in 2nd half; agent +${s.rssGrowthPeakMiB.agent}`
        : '—';
    };
    const bounded = Object.values(st).every(
      (s) =>
        s.rssGrowthSecondHalfMiB.server < 4 &&
        s.rssGrowthPeakMiB.server < 64 &&
        s.rssGrowthPeakMiB.agent < 64,
    );
    const secs = Object.values(st)[0]?.seconds ?? 0;
    rows.push([
      `stalled browser, RSS growth over ${secs} s (MiB)`,
      cell('server→local'),
      cell('server→agent'),
      'n/a',
      'bounded (< 4 MiB growth in the 2nd half, < 64 MiB peak)',
      verdict(bounded),
    ]);
    rows.push([
      'another session meanwhile, keystroke p50 / p95 / p99 (ms)',
      fmt(st['server→local']?.otherSessionKeystrokes),
      fmt(st['server→agent']?.otherSessionKeystrokes),
      '',
      'unaffected',
      '',
    ]);
  }
  const ot = all['openTime'] as { p50: Record<string, Record<string, number>> } | undefined;
  if (ot) {
    const c = (cl: string, k: string): string => String(ot.p50[cl]?.[k] ?? '—');
    const phases = (cl: string): string =>
      `POST ${c(cl, 'post')} · upgrade ${c(cl, 'upgrade')} · hello ${c(cl, 'hello')} · →secret ${c(cl, 'hello_to_secret')} · secret→token ${c(cl, 'secret_to_token')} · token→kubeconfig ${c(cl, 'token_to_kubeconfig')} · →pod ${c(cl, 'kubeconfig_to_pod')} · pod→ready ${c(cl, 'pod_to_ready_status')} · →attaching ${c(cl, 'ready_to_attaching')} · attaching→first byte ${c(cl, 'attaching_to_first_byte')}`;
    rows.push([
      'cluster shell open, total p50 (ms)',
      c('local', 'total'),
      c('local-agent', 'total'),
      `pod's own start ${c('local', 'pod_own_start')} / ${c('local-agent', 'pod_own_start')}`,
      '',
      '',
    ]);
    rows.push(['open phases p50 (ms)', phases('local'), phases('local-agent'), '', '', '']);
    const ov = (cl: string): number => ot.p50[cl]?.['overhead'] ?? Infinity;
    rows.push([
      "open overhead excluding the pod's own start, p50 (ms)",
      c('local', 'overhead'),
      c('local-agent', 'overhead'),
      '',
      '≤ 150 ms p50',
      verdict(ov('local') <= 150 && ov('local-agent') <= 150),
    ]);
    rows.push([
      '→ of which the server noticing Ready late (Ready condition → its "ready" status; a watch); overhead without it (ms)',
      `${c('local', 'ready_detect_lag')}; ${c('local', 'overhead_without_ready_lag')}`,
      `${c('local-agent', 'ready_detect_lag')}; ${c('local-agent', 'overhead_without_ready_lag')}`,
      '',
      '',
      '',
    ]);
  }
  const tn = all['tunnel'] as { results: Record<string, number> } | undefined;
  if (tn) {
    const r = tn.results;
    rows.push([
      'tunnel bench: bulk MiB/s, tunnel vs raw ws (one process)',
      '',
      `${r['tunnel.bulk_mib_s']} (${Math.round((r['tunnel_vs_raw_bulk_ratio'] ?? 0) * 100)} %)`,
      String(r['raw_ws.bulk_mib_s']),
      '≥ 70 % of raw ws',
      verdict((r['tunnel_vs_raw_bulk_ratio'] ?? 0) >= 0.7),
    ]);
    rows.push([
      'tunnel bench: keystroke idle / under bulk p50 / p99 (ms)',
      '',
      `${r['tunnel.idle.p50_ms']} / ${r['tunnel.idle.p99_ms']} · ${r['tunnel.under_bulk.p50_ms']} / ${r['tunnel.under_bulk.p99_ms']}`,
      `${r['raw_ws.idle.p50_ms']} / ${r['raw_ws.idle.p99_ms']} · ${r['raw_ws.under_bulk.p50_ms']} / ${r['raw_ws.under_bulk.p99_ms']}`,
      'under bulk p99 ≤ 5',
      verdict((r['tunnel.under_bulk.p99_ms'] ?? Infinity) <= 5),
    ]);
    rows.push([
      'tunnel bench: RSS growth, stalled consumer 2 s (MiB)',
      '',
      String(r['tunnel.stalled_rss_growth_mib']),
      'n/a',
      '≤ window + cap',
      '',
    ]);
  }
  const rec = all['recording'] as
    | {
        mib: number;
        off: { mibPerSecond: number; keystroke: Dist };
        on: { mibPerSecond: number; keystroke: Dist };
        throughputCostPct: number;
        keystrokeAddedP50Ms: number;
        met: boolean;
      }
    | undefined;
  if (rec) {
    rows.push([
      `session recording, memory-only relay (upper bound of the cost; full path below): bulk ${rec.mib} MiB (MiB/s), on / off`,
      `${rec.on.mibPerSecond} / ${rec.off.mibPerSecond} (cost ${rec.throughputCostPct} %)`,
      '',
      '',
      '≤ 5 % throughput',
      verdict(rec.throughputCostPct <= 5),
    ]);
    rows.push([
      'session recording: keystroke RTT p50 / p95 / p99 (ms), on · off',
      `${fmt(rec.on.keystroke)} · ${fmt(rec.off.keystroke)} (+${rec.keystrokeAddedP50Ms} p50)`,
      '',
      '',
      '≤ 0.2 ms added p50',
      verdict(rec.keystrokeAddedP50Ms <= 0.2),
    ]);
  }
  rows.push(...recordingSystemRows(all['recordingSystem']));
  const fw = all['forwarded'] as
    | {
        samples: number;
        keystroke: { viaA: Dist; directB: Dist };
        addedP50Ms: number;
        bulk: { mib: number; rounds: number; mibS: { viaA: number; directB: number } };
        throughputRatio: number;
      }
    | undefined;
  if (fw) {
    rows.push([
      `forwarded between replicas (tunnel on B): keystroke RTT p50 / p95 / p99 (ms), ${fw.samples} samples, through A · directly on B`,
      '',
      `${fmt(fw.keystroke.viaA)} (${fw.addedP50Ms >= 0 ? '+' : ''}${fw.addedP50Ms} p50)`,
      fmt(fw.keystroke.directB),
      '≤ 1 ms added p50',
      verdict(fw.addedP50Ms <= 1),
    ]);
    rows.push([
      `forwarded between replicas: bulk ${fw.bulk.mib} MiB pod-exec output, median of ${fw.bulk.rounds} (MiB/s), through A · directly on B`,
      '',
      `${fw.bulk.mibS.viaA} (${Math.round(fw.throughputRatio * 100)} %)`,
      String(fw.bulk.mibS.directB),
      '',
      '',
    ]);
  }
  const sw = all['shellWrapper'] as
    { runs: number; rows: { name: string; p50: number; p95: number }[] } | undefined;
  const added = sw?.rows.find((r) => r.name.startsWith('added by the wrapper'));
  if (sw && added) {
    rows.push([
      `shell wrapper: added start-up of kubectl, ${sw.runs} runs, p50 / p95 (ms)`,
      `${round(added.p50, 1)} / ${round(added.p95, 1)}`,
      '',
      'the real kubectl',
      '≤ 10 ms p50',
      verdict(added.p50 <= 10),
    ]);
  }
  const cap = all['capacity'] as
    | {
        agents: number;
        agentsConnected: number;
        connectSeconds: number;
        perAgent: { rssKiB: number; heapKiB: number };
        loopIdle: { p99Ms: number };
        loopDuringAgentConnect: { p99Ms: number };
        loopWithAgents: { p99Ms: number };
        sessionsByCluster: Record<
          string,
          {
            opened: number;
            answering: number;
            openSeconds: number;
            perSession: { serverRssKiB: number; serverHeapKiB: number; agentRssKiB: number };
            loopDuringOpen: { p99Ms: number };
            loopSteady: { p99Ms: number };
            keystrokesWithAllOpen: Dist;
          }
        >;
      }
    | undefined;
  if (cap) {
    rows.push([
      `${cap.agents} simulated agents (mTLS tunnel): connected, seconds`,
      '',
      `${cap.agentsConnected} in ${cap.connectSeconds} s`,
      '',
      '',
      '',
    ]);
    rows.push([
      'server memory per agent, RSS / JS heap after GC (KiB)',
      '',
      `${cap.perAgent.rssKiB} / ${cap.perAgent.heapKiB}`,
      '',
      '',
      '',
    ]);
    rows.push([
      'server event-loop delay p99: idle · agents connecting · with agents (ms, 10 ms = idle timer)',
      '',
      `${cap.loopIdle.p99Ms} · ${cap.loopDuringAgentConnect.p99Ms} · ${cap.loopWithAgents.p99Ms}`,
      '',
      '',
      '',
    ]);
    const s = cap.sessionsByCluster;
    const cell = (cl: string, f: (x: NonNullable<(typeof s)[string]>) => string): string => {
      const x = s[cl];
      return x ? f(x) : '—';
    };
    rows.push([
      'concurrent exec sessions (`cat`): opened / answering, seconds',
      cell('local', (x) => `${x.opened} / ${x.answering} in ${x.openSeconds} s`),
      cell('local-agent', (x) => `${x.opened} / ${x.answering} in ${x.openSeconds} s`),
      '',
      '',
      '',
    ]);
    rows.push([
      'memory per session: server RSS / server heap / agent RSS (KiB)',
      cell('local', (x) => `${x.perSession.serverRssKiB} / ${x.perSession.serverHeapKiB} / —`),
      cell(
        'local-agent',
        (x) => `${x.perSession.serverRssKiB} / ${x.perSession.serverHeapKiB} / ${x.perSession.agentRssKiB}`,
      ),
      '',
      '',
      '',
    ]);
    rows.push([
      'server event-loop delay p99: opening · steady (ms)',
      cell('local', (x) => `${x.loopDuringOpen.p99Ms} · ${x.loopSteady.p99Ms}`),
      cell('local-agent', (x) => `${x.loopDuringOpen.p99Ms} · ${x.loopSteady.p99Ms}`),
      '',
      '',
      '',
    ]);
    rows.push([
      'keystroke RTT with all sessions open p50 / p95 / p99 (ms)',
      cell('local', (x) => fmt(x.keystrokesWithAllOpen)),
      cell('local-agent', (x) => fmt(x.keystrokesWithAllOpen)),
      '',
      '',
      '',
    ]);
  }
  return rows;
}

// ---------------------------------------------------------------- issue 24: the goals table
const GO_REFERENCE_LABEL = 'Go original (reference, 2026-12-05)';
/** [measure, direct exec, this run, goal, verdict, Go original] */
type GoalRow = [string, string, string, string, string, string];
const median = (xs: number[]): number => {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2;
};

/**
 * The six measures of issue 24 plus idle RSS, each from the JSON of the steps that already ran
 * (nothing is measured twice): keystroke (idle), throughput (all rounds), shell wrapper, idle.
 * The Go column is the issue's run of the Go original (same machine kind), a fixed reference.
 */
function issue24Table(all: Record<string, unknown>): GoalRow[] {
  const rows: GoalRow[] = [];
  const ks = all['keystroke'] as
    { samplesIdle: number; idle: Record<PathName, Dist>; addedIdle: Record<string, Dist> } | undefined;
  if (ks) {
    const direct = ks.idle.direct.p50;
    for (const [path, label, goal, go] of [
      ['server→agent', 'agent path', 0.5, '+0.68–0.76 ms'],
      ['server→local', 'kubeconfig path', 0.2, '+0.20–0.25 ms'],
    ] as const) {
      const added = ks.addedIdle[path]?.p50 ?? NaN;
      rows.push([
        `added keystroke RTT p50 vs direct exec, ${label} (${ks.samplesIdle} samples)`,
        `${direct} ms RTT`,
        `${added >= 0 ? '+' : ''}${round(added, 2)} ms (RTT ${ks.idle[path].p50} ms)`,
        `≤ +${goal} ms`,
        verdict(added <= goal),
        go,
      ]);
    }
  }
  type TpRun = { mibS: number; serverPeak: number; agentPeak: number; cpuMsPerMiB: Record<string, number> };
  const tp = all['throughput'] as { mib: number; runs: Partial<Record<PathName, TpRun[]>> } | undefined;
  const agentRuns = tp?.runs['server→agent'] ?? [];
  const directRuns = tp?.runs.direct ?? [];
  if (tp && agentRuns.length > 0 && directRuns.length > 0) {
    const a = median(agentRuns.map((r) => r.mibS));
    const d = median(directRuns.map((r) => r.mibS));
    rows.push([
      `bulk throughput, agent path, median of ${agentRuns.length} (${tp.mib} MiB each), % of direct`,
      `${round(d, 1)} MiB/s`,
      `${round(a, 1)} MiB/s = ${Math.round((100 * a) / d)} %`,
      '≥ 90 %',
      verdict(a / d >= 0.9),
      '49–56 %',
    ]);
    const ours = (r: TpRun): number => (r.cpuMsPerMiB['server'] ?? NaN) + (r.cpuMsPerMiB['agent'] ?? NaN);
    const total = (r: TpRun): number => Object.values(r.cpuMsPerMiB).reduce((x, y) => x + y, 0);
    const cpu = median(agentRuns.map(ours));
    rows.push([
      'CPU per MiB, server + agent, agent path (median over runs)',
      `all processes ${round(median(directRuns.map(total)), 1)} ms`,
      `${round(cpu, 1)} ms (server ${round(median(agentRuns.map((r) => r.cpuMsPerMiB['server'] ?? NaN)), 1)} + agent ${round(median(agentRuns.map((r) => r.cpuMsPerMiB['agent'] ?? NaN)), 1)}); all processes ${round(median(agentRuns.map(total)), 1)} ms`,
      '≤ 5 ms',
      verdict(cpu <= 5),
      '12.7 ms',
    ]);
    const sp = Math.max(...agentRuns.map((r) => r.serverPeak));
    const ap = Math.max(...agentRuns.map((r) => r.agentPeak));
    rows.push([
      'peak RSS during bulk, server · agent (agent path)',
      `${Math.max(...directRuns.map((r) => r.serverPeak))} · ${Math.max(...directRuns.map((r) => r.agentPeak))} MiB (while direct ran)`,
      `${sp} · ${ap} MiB`,
      '≤ 100 · ≤ 64 MiB',
      verdict(sp <= 100 && ap <= 64),
      '88 · 43–46 MiB',
    ]);
  }
  const sw = all['shellWrapper'] as { runs: number; rows: { name: string; p50: number }[] } | undefined;
  const wrapperAdded = sw?.rows.find((r) => r.name.startsWith('added by the wrapper'));
  if (sw && wrapperAdded) {
    rows.push([
      `audit wrapper, added per kubectl call p50 (${sw.runs} runs)`,
      `real kubectl ${round(sw.rows[0]?.p50 ?? NaN, 1)} ms`,
      `+${round(wrapperAdded.p50, 1)} ms`,
      '≤ 10 ms',
      verdict(wrapperAdded.p50 <= 10),
      '1–2 ms',
    ]);
  }
  const idle = all['idle'] as
    | { idleMs: number; noGc: { server: number; agent: number }; afterGc: { server: number; agent: number } }
    | undefined;
  if (idle) {
    rows.push([
      `idle RSS, server · agent, after ${idle.idleMs / 1000} s (after a forced GC)`,
      'n/a',
      `${idle.noGc.server} (${idle.afterGc.server}) · ${idle.noGc.agent} (${idle.afterGc.agent}) MiB`,
      '(no goal of its own)',
      '',
      '—',
    ]);
  }
  return rows;
}

main().catch((err: unknown) => {
  say(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
