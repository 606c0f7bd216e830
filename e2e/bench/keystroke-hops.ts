/**
 * Where a keystroke's time goes, hop by hop (issue 24): the benchmark system (built server and
 * agent) started with the keystroke hop tracer on (PERISCOPE_TRACE_KEYSTROKE=1,
 * libs/protocol/src/tunnel/hop-trace.ts), one byte into `cat` round-robin over the three paths,
 * and the marks of the server and the agent (CLOCK_MONOTONIC, the same clock as this process's
 * `process.hrtime`) read through their inspectors and lined up with each keystroke's send and
 * echo. Prints the median time of each hop after the send and of each segment between hops.
 *
 *   npx tsx e2e/bench/keystroke-hops.ts [--samples=200]
 *
 * The tracer adds a few µs per mark (≈ 12 marks per keystroke on the agent path); compare the
 * segments, and take the round trips from `npm run bench`, which runs with the tracer off.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { HopMark } from '@periscope/protocol';

import { dist, inspectorEval, keystroke, round, sleep, type Dist } from './bench-lib';
import { startBenchSystem } from './bench-system';
import { PATHS, SystemBench, type PathName } from './system-bench';

const args = process.argv.slice(2);
const samples = Number(args.find((a) => a.startsWith('--samples='))?.slice(10) ?? 200);
const say = (l: string): void => {
  process.stderr.write(`[hops] ${l}\n`);
};

/** The hops a keystroke passes on each path, in order (`send` and `echo` are this client). */
const ORDER: Record<Exclude<PathName, 'direct'>, string[]> = {
  'server→local': [
    'send',
    'server:browser.tcp.in',
    'server:browser.message',
    'server:exec.written',
    'server:browser.send',
    'server:browser.tcp.out',
    'echo',
  ],
  'server→agent': [
    'send',
    'server:browser.tcp.in',
    'server:browser.message',
    'server:mux.write',
    'server:mux.send',
    'server:tunnel.tls.out',
    'agent:tunnel.tls.in',
    'agent:tunnel.event',
    'agent:mux.receive',
    'agent:exec.write',
    'agent:exec.written',
    'agent:exec.output',
    'agent:mux.write',
    'agent:mux.send',
    'agent:tunnel.tls.out',
    'server:tunnel.tls.in',
    'server:tunnel.event',
    'server:mux.receive',
    'server:browser.send',
    'server:browser.tcp.out',
    'echo',
  ],
};

/**
 * Marks of completions that come later than the next hop (a write's callback, Socket.IO's emit
 * done): reported with their time after the send, kept out of the segment chain, where they
 * made negative segments.
 */
const COMPLETIONS: Record<Exclude<PathName, 'direct'>, string[]> = {
  'server→local': [],
  'server→agent': ['server:exec.written', 'server:tunnel.emitted', 'agent:tunnel.emitted'],
};

const TAKE = `(() => { const t = globalThis[Symbol.for('periscope.hopTrace')]; return t ? t.take() : null; })()`;

async function main(): Promise<void> {
  // The children inherit it; this process does not trace.
  process.env['PERISCOPE_TRACE_KEYSTROKE'] = '1';
  const sys = await startBenchSystem({ log: say });
  const marks: HopMark[] = [];
  const take = async (): Promise<void> => {
    for (const [who, url] of [
      ['server', sys.inspectorUrl],
      ['agent', sys.agentInspectorUrl],
    ] as const) {
      const got = (await inspectorEval(url, TAKE)) as HopMark[] | null;
      if (got === null)
        throw new Error(`the ${who} has no hop tracer: is the build current (npm run build)?`);
      marks.push(...got);
    }
  };
  const b = new SystemBench(sys, { quick: false, log: say });
  const windows: { path: PathName; t0: number; t1: number }[] = [];
  try {
    await b.setup();
    const echo = {} as Record<PathName, Awaited<ReturnType<SystemBench['open']>>>;
    for (const p of PATHS) echo[p] = await b.open(p, ['cat']);
    for (const p of PATHS) for (let i = 0; i < 5; i++) await keystroke(echo[p].io, 97 + i);
    await take();
    marks.length = 0;
    say(`${samples} keystrokes per path, round-robin, one every ~7 ms`);
    for (let i = 0; i < samples; i++) {
      for (const p of PATHS) {
        const t0 = Number(process.hrtime.bigint());
        await keystroke(echo[p].io, 97 + (i % 26));
        windows.push({ path: p, t0, t1: Number(process.hrtime.bigint()) });
        await sleep(7);
      }
      // The rings hold 8192 marks; ≈ 35 per round here.
      if (i % 50 === 49) await take();
    }
    await take();
    for (const p of PATHS) await echo[p].close();
  } finally {
    await sys.stop();
  }

  marks.sort((a, b) => a.t - b.t);
  const result: Record<string, unknown> = {};
  for (const path of PATHS) {
    const ws = windows.filter((w) => w.path === path);
    const rtt = dist(ws.map((w) => (w.t1 - w.t0) / 1e6));
    if (path === 'direct') {
      result[path] = { rtt };
      continue;
    }
    const order = ORDER[path];
    const all = [...order, ...COMPLETIONS[path]];
    const at: Record<string, number[]> = Object.fromEntries(all.map((h) => [h, []]));
    const seg: Record<string, number[]> = {};
    let lo = 0;
    for (const w of ws) {
      while (lo < marks.length && (marks[lo]?.t ?? Infinity) < w.t0) lo++;
      const first = new Map<string, number>([
        ['send', w.t0],
        ['echo', w.t1],
      ]);
      for (let k = lo; k < marks.length && (marks[k]?.t ?? Infinity) <= w.t1; k++) {
        const m = marks[k];
        if (m && !first.has(m.hop)) first.set(m.hop, m.t);
      }
      let prev: string | undefined;
      for (const h of order) {
        const t = first.get(h);
        if (t === undefined) continue;
        at[h]?.push((t - w.t0) / 1e6);
        if (prev !== undefined) (seg[`${prev} → ${h}`] ??= []).push((t - (first.get(prev) ?? t)) / 1e6);
        prev = h;
      }
      for (const h of COMPLETIONS[path]) {
        const t = first.get(h);
        if (t !== undefined) at[h]?.push((t - w.t0) / 1e6);
      }
    }
    result[path] = {
      rtt,
      hops: Object.fromEntries(all.map((h) => [h, at[h]?.length ? dist(at[h]) : null])),
      segments: Object.fromEntries(Object.entries(seg).map(([k, v]) => [k, dist(v)])),
    };
  }

  const ms = (d: Dist | null | undefined): string => (d ? `${round(d.p50 * 1000, 0)} µs` : '—');
  for (const path of ['server→local', 'server→agent'] as const) {
    const r = result[path] as {
      rtt: Dist;
      hops: Record<string, Dist | null>;
      segments: Record<string, Dist>;
    };
    process.stdout.write(
      `\n${path}: RTT p50 ${r.rtt.p50} ms (direct ${(result['direct'] as { rtt: Dist }).rtt.p50} ms)\n`,
    );
    process.stdout.write('| segment | p50 | p95 | n |\n|---|---|---|---|\n');
    for (const [k, d] of Object.entries(r.segments))
      process.stdout.write(`| ${k} | ${ms(d)} | ${round(d.p95 * 1000, 0)} µs | ${d.n} |\n`);
    for (const h of COMPLETIONS[path])
      process.stdout.write(`completion ${h}: ${ms(r.hops[h])} after the send\n`);
  }
  const dir = join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `keystroke-hops-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ samples, results: result }, null, 2));
  process.stdout.write(`wrote ${file}\n`);
  process.exit(0);
}

main().catch((err: unknown) => {
  say(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
