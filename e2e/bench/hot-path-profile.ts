/**
 * Where the CPU and the memory of a bulk stream go (issue 24, docs/benchmarks.md "Profiles"):
 * the benchmark system (built server and agent, session recording OFF unless
 * `--recording=output`), one warm-up stream, then per path one `yes | head -c` stream of `--mib`
 * MiB while the server and the agent run V8's sampling CPU profiler (started and stopped through
 * their inspectors, so start-up and the other steps are not in the profile). Prints per process:
 * CPU ms per MiB (`/proc/<pid>/stat`), the profile's self time per MiB by category (garbage
 * collector, program = native/kernel work outside JavaScript, JavaScript by package) and the top
 * self-time functions; `process.memoryUsage()` idle (after a forced GC) and its peak during the
 * stream. With `--snapshots`, afterwards (a snapshot inflates RSS for the rest of a process's
 * life): a heap snapshot of each process idle and one mid-stream, summarised by constructor.
 *
 *   npx tsx e2e/bench/hot-path-profile.ts [--mib=128] [--paths=server→agent,server→local]
 *        [--interval-us=250] [--recording=off|output] [--snapshots] [--top=20] [--sample-ms=200]
 *
 * Profiles are written to /tmp/periscope-profiles/<process>-<path>.cpuprofile (open them in
 * Chrome DevTools); the summary as JSON to e2e/bench/results/hot-path-profile-<time>.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import WebSocket from 'ws';

import { cpuSeconds, forceGc, inspectorEval, procMem, round, sleep } from './bench-lib';
import { startBenchSystem } from './bench-system';
import { SystemBench, type PathName } from './system-bench';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const mib = Number(flag('mib') ?? 128);
const paths = (flag('paths') ?? 'server→agent,server→local').split(',') as PathName[];
const intervalUs = Number(flag('interval-us') ?? 250);
const top = Number(flag('top') ?? 20);
const snapshots = args.includes('--snapshots');
/** ms between memoryUsage readings through the inspector during the stream; 0 = none */
const sampleMs = Number(flag('sample-ms') ?? 200);
const say = (l: string): void => {
  process.stderr.write(`[profile] ${l}\n`);
};
const profDir = '/tmp/periscope-profiles';

/** A Chrome DevTools Protocol session on one inspector WebSocket (every call has a deadline). */
class Cdp {
  private id = 0;
  private readonly waiting = new Map<number, (m: { result?: unknown; error?: unknown }) => void>();
  readonly events: ((m: { method: string; params: Record<string, unknown> }) => void)[] = [];
  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString()) as {
        id?: number;
        method?: string;
        params?: Record<string, unknown>;
        result?: unknown;
        error?: unknown;
      };
      if (m.id !== undefined) this.waiting.get(m.id)?.(m);
      else if (m.method !== undefined)
        for (const f of this.events) f({ method: m.method, params: m.params ?? {} });
    });
  }
  static async open(url: string): Promise<Cdp> {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1 << 30 });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => {
        resolve();
      });
      ws.once('error', reject);
    });
    return new Cdp(ws);
  }
  call<T>(method: string, params: Record<string, unknown> = {}, timeoutMs = 120_000): Promise<T> {
    const my = ++this.id;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(my);
        reject(new Error(`inspector: no answer to ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(my, (m) => {
        clearTimeout(timer);
        this.waiting.delete(my);
        if (m.error !== undefined) reject(new Error(`inspector: ${method}: ${JSON.stringify(m.error)}`));
        else resolve(m.result as T);
      });
      this.ws.send(JSON.stringify({ id: my, method, params }));
    });
  }
  close(): void {
    this.ws.close();
  }
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Where a script comes from: an npm package, one of our libs/apps, Node's own, or V8's. */
function origin(url: string): string {
  if (url === '') return '(native / V8)';
  if (url.startsWith('node:')) return 'node: internals';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 14).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? url);
  }
  const m = /\/(apps|libs)\/([^/]+)\//.exec(url);
  return m ? `${m[1]}/${m[2]}` : url;
}

function summarise(p: Profile, mibs: number): Record<string, unknown> {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const fn = new Map<string, number>();
  const cat = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const name = n.callFrame.functionName || '(anonymous)';
    const special = ['(idle)', '(program)', '(garbage collector)', '(root)'].includes(name);
    const where = special ? name : origin(n.callFrame.url);
    cat.set(where, (cat.get(where) ?? 0) + us);
    if (name !== '(idle)') total += us;
    const key = special
      ? name
      : `${name} (${where}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''})`;
    fn.set(key, (fn.get(key) ?? 0) + us);
  }
  const perMiB = (us: number): number => round(us / 1000 / mibs, 2);
  const share = (us: number): number => round((100 * us) / Math.max(1, total), 1);
  const sorted = (m: Map<string, number>, n: number): [string, { msPerMiB: number; pct: number }][] =>
    [...m.entries()]
      .filter(([k]) => k !== '(idle)')
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => [k, { msPerMiB: perMiB(us), pct: share(us) }]);
  return {
    busyMsPerMiB: perMiB(total),
    idleMs: round((cat.get('(idle)') ?? 0) / 1000, 0),
    wallMs: round((p.endTime - p.startTime) / 1000, 0),
    byOrigin: Object.fromEntries(sorted(cat, 30)),
    topFunctions: Object.fromEntries(sorted(fn, top)),
  };
}

/** A heap snapshot through the inspector, summarised by constructor (self size, count). */
async function heapByConstructor(url: string): Promise<Record<string, unknown>> {
  const cdp = await Cdp.open(url);
  const chunks: string[] = [];
  cdp.events.push((m) => {
    if (m.method === 'HeapProfiler.addHeapSnapshotChunk') chunks.push(m.params['chunk'] as string);
  });
  try {
    await cdp.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false }, 300_000);
  } finally {
    cdp.close();
  }
  const snap = JSON.parse(chunks.join('')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const f = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [iType, iName, iSize] = [f.indexOf('type'), f.indexOf('name'), f.indexOf('self_size')];
  const agg = new Map<string, { bytes: number; count: number }>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += f.length) {
    const type = types[snap.nodes[i + iType] ?? 0] ?? '?';
    const size = snap.nodes[i + iSize] ?? 0;
    const name = snap.strings[snap.nodes[i + iName] ?? 0] ?? '?';
    // objects and closures by constructor; the rest (strings, code, arrays, hidden) by kind
    const key =
      type === 'object' || type === 'closure' || type === 'native'
        ? `${type === 'object' ? '' : `${type} `}${name.length > 60 ? `${name.slice(0, 57)}…` : name}`
        : `(${type})`;
    const a = agg.get(key) ?? { bytes: 0, count: 0 };
    a.bytes += size;
    a.count++;
    agg.set(key, a);
    total += size;
  }
  return {
    totalMiB: round(total / 1048576, 1),
    top: Object.fromEntries(
      [...agg.entries()]
        .sort((a, b) => b[1].bytes - a[1].bytes)
        .slice(0, top)
        .map(([k, v]) => [k, { MiB: round(v.bytes / 1048576, 2), count: v.count }]),
    ),
  };
}

const MEM = `(() => { const m = process.memoryUsage(); const v8 = process.mainModule.require('node:v8');
  const s = Object.fromEntries(v8.getHeapSpaceStatistics().map((x) => [x.space_name, x.space_used_size]));
  return { ...m, new_space: s.new_space, old_space: s.old_space, large_object_space: s.large_object_space, code_space: s.code_space }; })()`;
const mibOf = (m: Record<string, number>): Record<string, number> =>
  Object.fromEntries(Object.entries(m).map(([k, v]) => [k, round(v / 1048576, 1)]));

async function main(): Promise<void> {
  if (flag('recording') !== undefined) process.env['PERISCOPE_SESSION_RECORDING'] = flag('recording');
  else process.env['PERISCOPE_SESSION_RECORDING'] = 'off';
  mkdirSync(profDir, { recursive: true });
  // BENCH_VERBOSE=1: the server's and the agent's own output too (e.g. with --trace-gc)
  const sys = await startBenchSystem({
    log: say,
    ...(process.env['BENCH_VERBOSE'] !== undefined ? { processLog: say } : {}),
  });
  const b = new SystemBench(sys, { quick: true, log: say });
  const procs = {
    server: { pid: sys.serverPid, url: sys.inspectorUrl },
    agent: { pid: sys.agentPid, url: sys.agentInspectorUrl },
  };
  const out: Record<string, unknown> = {
    mib,
    intervalUs,
    recording: process.env['PERISCOPE_SESSION_RECORDING'],
    node: process.version,
  };
  const stream = async (path: PathName, n: number, midway?: () => Promise<void>): Promise<number> => {
    const bytes = n * 1048576;
    const s = await b.open(path, ['sh', '-c', `yes periscope-hot-path-profile | head -c ${bytes}`]);
    const t0 = performance.now();
    const deadline = Date.now() + 300_000;
    let mid = midway;
    while (s.io.bytes < bytes && Date.now() < deadline) {
      if (mid && s.io.bytes >= bytes / 2) {
        await mid();
        mid = undefined;
      }
      await sleep(20);
    }
    const secs = (performance.now() - t0) / 1000;
    if (s.io.bytes !== bytes) say(`${path}: only ${s.io.bytes} of ${bytes} bytes arrived`);
    await s.close();
    return round(n / secs, 1);
  };
  try {
    await b.setup();
    for (const p of paths) await stream(p, 16);
    await sleep(2000);
    const idle: Record<string, unknown> = {};
    for (const [who, pr] of Object.entries(procs)) {
      await forceGc(pr.url);
      idle[who] = {
        rssMiB: procMem(pr.pid).rss,
        ...mibOf((await inspectorEval(pr.url, MEM)) as Record<string, number>),
      };
    }
    out['idleAfterGc'] = idle;
    for (const path of paths) {
      say(`${path}: ${mib} MiB with the CPU profiler on (every ${intervalUs} µs)`);
      const cdps = {
        server: await Cdp.open(procs.server.url),
        agent: await Cdp.open(procs.agent.url),
      };
      for (const c of Object.values(cdps)) {
        await c.call('Profiler.enable');
        await c.call('Profiler.setSamplingInterval', { interval: intervalUs });
      }
      const peak: Record<string, Record<string, number>> = { server: {}, agent: {} };
      const sampling = { on: true };
      const sampler = (async () => {
        while (sampling.on && sampleMs > 0) {
          for (const [who, pr] of Object.entries(procs)) {
            const m = (await inspectorEval(pr.url, MEM).catch(() => ({}))) as Record<string, number>;
            const pk = (peak[who] ??= {});
            for (const [k, v] of Object.entries(m)) pk[k] = Math.max(pk[k] ?? 0, v);
            pk['procRss'] = Math.max(pk['procRss'] ?? 0, procMem(pr.pid).rss * 1048576);
          }
          await sleep(sampleMs);
        }
      })();
      const cpu0 = { server: cpuSeconds(procs.server.pid), agent: cpuSeconds(procs.agent.pid) };
      for (const c of Object.values(cdps)) await c.call('Profiler.start');
      const mibS = await stream(path, mib);
      const profiles: Record<string, Profile> = {};
      for (const [who, c] of Object.entries(cdps)) {
        profiles[who] = (await c.call<{ profile: Profile }>('Profiler.stop')).profile;
        c.close();
      }
      const cpu1 = { server: cpuSeconds(procs.server.pid), agent: cpuSeconds(procs.agent.pid) };
      sampling.on = false;
      await sampler;
      const res: Record<string, unknown> = { mibS };
      for (const who of ['server', 'agent'] as const) {
        const prof = profiles[who];
        if (!prof) continue;
        const file = join(profDir, `${who}-${path.replace('→', '-')}.cpuprofile`);
        writeFileSync(file, JSON.stringify(prof));
        res[who] = {
          cpuMsPerMiB: round(((cpu1[who] - cpu0[who]) * 1000) / mib, 2),
          peak: mibOf(peak[who] ?? {}),
          profile: summarise(prof, mib),
          file,
        };
      }
      out[path] = res;
      await sleep(1500);
    }
    if (snapshots) {
      const snaps: Record<string, unknown> = {};
      for (const [who, pr] of Object.entries(procs)) {
        await forceGc(pr.url);
        snaps[`${who} idle`] = await heapByConstructor(pr.url);
      }
      const path = paths[0] ?? 'server→agent';
      await stream(path, mib, async () => {
        for (const [who, pr] of Object.entries(procs))
          snaps[`${who} mid-stream (${path})`] = await heapByConstructor(pr.url);
      });
      out['heapSnapshots'] = snaps;
    }
  } finally {
    await sys.stop();
  }
  const dir = join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `hot-path-profile-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(out, null, 2));
  process.stdout.write(`${JSON.stringify(out, null, 2)}\nwrote ${file}\n`);
  process.exit(0);
}

main().catch((err: unknown) => {
  say(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
