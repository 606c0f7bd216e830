/**
 * The full-path benchmarks (browser socket → server → [agent tunnel →] apiserver exec → pod),
 * each compared side by side in the same run with a direct exec to the same apiserver:
 *
 * 1. keystroke echo round trip, idle (one byte into `cat`, tty off, wait for it to come back);
 * 2. the same while a bulk session streams on the same path (`head -c … /dev/zero`, read as fast
 *    as possible);
 * 3. bulk output throughput with a checksum, with server and agent peak RSS;
 * 4. a stalled browser (stops reading while the shell floods): server and agent RSS over time,
 *    and keystrokes of another session meanwhile;
 * 5. cluster-shell open time by phase, and the overhead excluding the pod's own start (seen by a
 *    watch on the apiserver);
 * 6. capacity: simulated agents over the real registration + mTLS tunnel, and concurrent pod exec
 *    sessions on one server replica; RSS per agent/session after a forced GC, event-loop delay.
 *
 * Paths: `direct` (v5 exec WebSocket straight to the apiserver with the admin kubeconfig),
 * `server→local` (the kubeconfig cluster through the server), `server→agent` (the agent cluster
 * `local-agent` through the server and the tunnel).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

import * as k8s from '@kubernetes/client-node';
import { shellObjectName } from '@periscope/cluster-ops';
import { Backoff, RESET_CODE } from '@periscope/protocol';
import pino from 'pino';

import { newKeyAndCsr } from '../../apps/agent/src/identity/agent-keys';
import { register } from '../../apps/agent/src/identity/registration';
import { TunnelClient } from '../../apps/agent/src/tunnel/tunnel-client';
import {
  adminKubeConfig,
  clusterPids,
  cpuSeconds,
  DirectExec,
  dist,
  forceGc,
  keystroke,
  loopDelayP99,
  openPodExec,
  procMem,
  round,
  RssSampler,
  scrapeMetrics,
  sleep,
  Term,
  type Dist,
  type Echo,
} from './bench-lib';
import type { BenchSystem } from './bench-system';

export const BENCH_NS = 'bench';
export const BENCH_POD = 'cat-target';

export interface SystemBenchOptions {
  quick: boolean;
  /** throughput: MiB per run and rounds over the three paths (defaults by mode) */
  mib?: number;
  rounds?: number;
  /** keystrokes under bulk too (default); false: idle keystrokes only (quick A/B of latency) */
  keystrokesUnderBulk?: boolean;
  log: (line: string) => void;
}

export const PATHS = ['direct', 'server→local', 'server→agent'] as const;
export type PathName = (typeof PATHS)[number];
const clusterOf = (p: PathName): string => (p === 'server→agent' ? 'local-agent' : 'local');

type Closable = Echo & {
  bytes: number;
  messages: number;
  firstByteAt: number | undefined;
  lastByteAt: number | undefined;
};

export class SystemBench {
  readonly kc: k8s.KubeConfig;
  readonly results: Record<string, unknown> = {};

  constructor(
    readonly sys: BenchSystem,
    readonly o: SystemBenchOptions,
  ) {
    this.kc = adminKubeConfig(sys.cluster.info.adminKubeconfig);
  }

  get pids(): Record<string, number> {
    return { server: this.sys.serverPid, agent: this.sys.agentPid };
  }

  async setup(): Promise<void> {
    const c = this.sys.cluster;
    await c.createNamespace(BENCH_NS);
    await c.apply(
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: BENCH_POD, namespace: BENCH_NS },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'main', image: 'busybox', command: ['sleep', '36000'] }],
        },
      }),
    );
    await c.kubectlOk(['-n', BENCH_NS, 'wait', '--for=condition=Ready', `pod/${BENCH_POD}`, '--timeout=60s']);
  }

  /** Opens `command` (tty off) into the bench pod through `path`. */
  async open(
    path: PathName,
    command: string[],
    /** set before any output can come (what comes with the upgrade answer included) */
    onData?: (b: Buffer) => void,
    /** another cluster than the path's (`local-rec`: the same apiserver, recorded; bench-system.ts) */
    cluster?: string,
  ): Promise<{ io: Closable; ended: Promise<unknown>; close: () => Promise<void> }> {
    if (path === 'direct') {
      const d = await DirectExec.open(this.kc, BENCH_NS, BENCH_POD, 'main', command, onData);
      return {
        io: d,
        ended: d.exited,
        close: async () => {
          d.close();
          await Promise.race([d.exited, sleep(2000)]);
        },
      };
    }
    const t = await openPodExec(
      this.sys,
      cluster ?? clusterOf(path),
      BENCH_NS,
      BENCH_POD,
      { container: 'main', command, tty: false },
      onData,
    );
    return {
      io: t,
      ended: t.closed,
      close: () => t.close(),
    };
  }

  // ------------------------------------------------------------------ (1) + (2) keystrokes
  async keystrokes(): Promise<void> {
    const samples = this.o.quick ? 60 : 200;
    const bulkSamples = this.o.quick ? 50 : 150;
    const pacedSamples = this.o.quick ? 40 : 100;
    const added = (d: Record<PathName, Dist>, p: PathName): Record<string, number> => ({
      p50: round(d[p].p50 - d.direct.p50, 3),
      p95: round(d[p].p95 - d.direct.p95, 3),
      p99: round(d[p].p99 - d.direct.p99, 3),
    });
    const intervalMs = 20;
    const echo: Partial<Record<PathName, Awaited<ReturnType<SystemBench['open']>>>> = {};
    for (const p of PATHS) echo[p] = await this.open(p, ['cat']);
    const byte = (i: number): number => 97 + (i % 26);
    for (const p of PATHS) for (let i = 0; i < 5; i++) await keystroke(echo[p]!.io, byte(i)); // warm-up

    // Idle: round-robin over the paths so that machine noise falls on all of them alike.
    const idle: Record<string, number[]> = Object.fromEntries(PATHS.map((p) => [p, []]));
    this.o.log(`keystrokes idle: ${samples} per path, one every ${intervalMs} ms, round-robin`);
    for (let i = 0; i < samples; i++) {
      for (const p of PATHS) {
        idle[p]!.push(await keystroke(echo[p]!.io, byte(i)));
        await sleep(intervalMs / PATHS.length);
      }
    }

    // Under bulk: every path gets its own bulk session on the same path (for the agent: on the
    // same tunnel), all three at once, and the keystrokes go round-robin over the paths, so that
    // all of them see the same machine (this one is shared and noisy). Two kinds of bulk: as fast
    // as the reader takes it (saturates this 2-core machine), and paced at ≈ 17 MiB/s per session
    // (1 MiB every 50 ms, bounded to 400 MiB), which leaves CPU free and so separates
    // head-of-line effects from CPU queuing.
    const variants = {
      underBulk: ['head', '-c', String(100 * 1024 ** 3), '/dev/zero'],
      underPacedBulk: [
        'sh',
        '-c',
        'i=0; while [ $i -lt 400 ]; do head -c 1048576 /dev/zero; sleep 0.05; i=$((i+1)); done',
      ],
    };
    const procs = { ...this.pids, ...clusterPids(this.sys.cluster.info.stateDir) };
    const ourCpu = (): number =>
      Object.values(procs).reduce((a, pid) => a + (cpuSeconds(pid) || 0), 0) +
      (process.cpuUsage().user + process.cpuUsage().system) / 1e6;
    const perVariant: Record<string, unknown> = {};
    for (const [variant, command] of Object.entries(this.o.keystrokesUnderBulk === false ? {} : variants)) {
      const n = variant === 'underBulk' ? bulkSamples : pacedSamples;
      this.o.log(`keystrokes ${variant}: ${n} per path, bulk on all three paths at once, round-robin`);
      const bulks = {} as Record<PathName, Awaited<ReturnType<SystemBench['open']>>>;
      for (const p of PATHS) bulks[p] = await this.open(p, command);
      await sleep(500);
      // reset both event-loop delay histograms: the next scrape covers just this variant
      await loopDelayP99(this.sys.opsBase);
      await loopDelayP99(this.sys.agentBase);
      const before = Object.fromEntries(PATHS.map((p) => [p, bulks[p].io.bytes]));
      const t0 = performance.now();
      const m0 = machineCpu();
      const c0 = ourCpu();
      const rtts: Record<string, number[]> = Object.fromEntries(PATHS.map((p) => [p, []]));
      for (let i = 0; i < n; i++) {
        for (const p of PATHS) {
          try {
            rtts[p]!.push(await keystroke(echo[p]!.io, byte(i)));
          } catch {
            rtts[p]!.push(5000);
          }
          await sleep(intervalMs / PATHS.length);
        }
      }
      const secs = (performance.now() - t0) / 1000;
      const m1 = machineCpu();
      const c1 = ourCpu();
      const loop = {
        server: await loopDelayP99(this.sys.opsBase),
        agent: await loopDelayP99(this.sys.agentBase),
      };
      const bulkRate = Object.fromEntries(
        PATHS.map((p) => [p, round((bulks[p].io.bytes - (before[p] ?? 0)) / 1024 / 1024 / secs, 1)]),
      );
      for (const p of PATHS) await bulks[p].close();
      await sleep(500);
      const d = Object.fromEntries(PATHS.map((p) => [p, dist(rtts[p]!)])) as Record<PathName, Dist>;
      perVariant[variant] = {
        samples: n,
        rtt: d,
        added: { 'server→local': added(d, 'server→local'), 'server→agent': added(d, 'server→agent') },
        bulkMiBs: bulkRate,
        /** CPU of the control plane, server, agent and this client, % of one core */
        ourCpuPct: round((100 * (c1 - c0)) / secs, 0),
        /** the whole machine (other jobs included), % of all cores */
        machineBusyPct: round((100 * (m1.busy - m0.busy)) / Math.max(1, m1.total - m0.total), 0),
        /** event-loop delay p99 / max of server and agent meanwhile (ms; 10 = the idle timer) */
        loop: {
          server: { p99: loop.server.p99Ms, max: loop.server.maxMs },
          agent: { p99: loop.agent.p99Ms, max: loop.agent.maxMs },
        },
      };
    }
    for (const p of PATHS) await echo[p]!.close();

    const idleD = Object.fromEntries(PATHS.map((p) => [p, dist(idle[p]!)])) as Record<PathName, Dist>;
    this.results['keystroke'] = {
      samplesIdle: samples,
      intervalMs,
      idle: idleD,
      addedIdle: {
        'server→local': added(idleD, 'server→local'),
        'server→agent': added(idleD, 'server→agent'),
      },
      ...perVariant,
    };
  }

  // ------------------------------------------------------------------ (3) throughput
  async throughput(): Promise<void> {
    const mib = this.o.mib ?? (this.o.quick ? 48 : 192);
    const rounds = this.o.rounds ?? (this.o.quick ? 1 : 2);
    const bytes = mib * 1024 * 1024;
    const line = 'periscope-bench-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n';
    const expected = expectedSha(line, bytes);
    const runs: Record<
      string,
      {
        mibS: number;
        ok: boolean;
        problem?: string;
        avgMessageKiB: number;
        serverPeak: number;
        agentPeak: number;
        /** peak minus the RSS when the run started */
        serverGrowth: number;
        agentGrowth: number;
        cpuMsPerMiB: Record<string, number>;
      }[]
    > = {};
    const procs = { ...this.pids, ...clusterPids(this.sys.cluster.info.stateDir) };
    const cpu = (): Record<string, number> => ({
      ...Object.fromEntries(Object.entries(procs).map(([n, pid]) => [n, cpuSeconds(pid)])),
      bench: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    });
    for (let r = 0; r < rounds; r++) {
      for (const p of PATHS) {
        this.o.log(`throughput ${p} round ${r + 1}/${rounds}: ${mib} MiB`);
        const sampler = new RssSampler(this.pids, 50);
        const cpu0 = cpu();
        const hash = createHash('sha256');
        // hashed from the first byte: output that comes in the same read as the upgrade answer
        // is delivered before `open` resolves
        // where the bytes first differ from the pattern (a gap inside shows there; a cut tail not)
        const pattern = Buffer.from(line.repeat(Math.ceil((1024 * 1024) / line.length) + 1));
        let at = 0;
        let firstGapAt: number | undefined;
        const s = await this.open(p, ['sh', '-c', `yes '${line.trimEnd()}' | head -c ${bytes}`], (b) => {
          hash.update(b);
          const from = at % line.length;
          if (
            firstGapAt === undefined &&
            b.length <= 1024 * 1024 &&
            !b.equals(pattern.subarray(from, from + b.length))
          )
            firstGapAt = at;
          at += b.length;
        });
        const end = { seen: false, at: 0 };
        void s.ended.then(() => {
          end.seen = true;
          end.at = Date.now();
        });
        const waitS = 180;
        const deadline = Date.now() + waitS * 1000;
        // 2 s more after the end: output that comes after the exit status still counts
        while (s.io.bytes < bytes && !(end.seen && Date.now() - end.at > 2000) && Date.now() < deadline)
          await sleep(20);
        const secs = ((s.io.lastByteAt ?? 0) - (s.io.firstByteAt ?? 0)) / 1000;
        const peak = sampler.stop();
        const got = s.io.bytes;
        const sha = hash.digest('hex');
        const ok = got === bytes && sha === expected;
        /** what went wrong, in words (the bytes counted are what the client received) */
        const problem = ok
          ? undefined
          : got > bytes
            ? `${got - bytes} bytes more than the ${bytes} sent`
            : got < bytes && firstGapAt !== undefined
              ? `${bytes - got} of ${bytes} bytes missing, the first gap in the chunk at byte ${firstGapAt}${end.seen ? '' : ` (timed out after ${waitS} s)`}`
              : got < bytes
                ? `${end.seen ? 'the stream ended' : `timed out after ${waitS} s`} with ${got} of ${bytes} bytes (${bytes - got} missing at the end: all came in order)`
                : 'all bytes came but their sha256 differs (corrupted or reordered)';
        if (problem !== undefined) {
          // the server's last control frames (how it said the session ended)
          const frames = s.io instanceof Term ? s.io.frames.slice(-3).map((f) => f.frame) : [];
          this.o.log(`throughput ${p} round ${r + 1}: ${problem} ${JSON.stringify(frames)}`);
        }
        const cpu1 = cpu();
        await s.close();
        (runs[p] ??= []).push({
          mibS: round(bytes / 1024 / 1024 / secs, 1),
          ok,
          ...(problem !== undefined ? { problem } : {}),
          avgMessageKiB: round(s.io.bytes / 1024 / Math.max(1, s.io.messages), 1),
          serverPeak: peak['server'] ?? NaN,
          agentPeak: peak['agent'] ?? NaN,
          serverGrowth: round((peak['server'] ?? NaN) - (sampler.series[0]?.rss['server'] ?? NaN), 1),
          agentGrowth: round((peak['agent'] ?? NaN) - (sampler.series[0]?.rss['agent'] ?? NaN), 1),
          cpuMsPerMiB: Object.fromEntries(
            Object.keys(cpu1).map((n) => [n, round((((cpu1[n] ?? 0) - (cpu0[n] ?? 0)) * 1000) / mib, 2)]),
          ),
        });
        await sleep(500);
      }
    }
    const best = (p: PathName): number => Math.max(...(runs[p] ?? []).map((x) => x.mibS));
    this.results['throughput'] = {
      mib,
      rounds,
      runs,
      bestMiBs: Object.fromEntries(PATHS.map((p) => [p, best(p)])),
      ratioToDirect: {
        'server→local': round(best('server→local') / best('direct'), 3),
        'server→agent': round(best('server→agent') / best('direct'), 3),
      },
      checksumsOk: Object.values(runs).every((rs) => rs.every((x) => x.ok)),
      hwmMiB: {
        server: round(procMem(this.sys.serverPid).hwm, 1),
        agent: round(procMem(this.sys.agentPid).hwm, 1),
      },
    };
  }

  // ------------------------------------------------------------------ (4) stalled browser
  async stalled(): Promise<void> {
    const seconds = this.o.quick ? 6 : 12;
    const out: Record<string, unknown> = {};
    for (const p of ['server→agent', 'server→local'] as const) {
      this.o.log(`stalled browser ${p}: ${seconds} s`);
      await forceGc(this.sys.inspectorUrl);
      await forceGc(this.sys.agentInspectorUrl);
      const base = { server: procMem(this.sys.serverPid).rss, agent: procMem(this.sys.agentPid).rss };
      const echo = await this.open(p, ['cat']);
      const flood = await this.open(p, ['head', '-c', String(100 * 1024 ** 3), '/dev/zero']);
      const term = flood.io as Term;
      await sleep(1000);
      term.ws.pause(); // the browser stops reading; the TCP window closes behind it
      const pausedAt = term.bytes;
      const sampler = new RssSampler(this.pids, 250);
      const rtts: number[] = [];
      const end = performance.now() + seconds * 1000;
      let i = 0;
      while (performance.now() < end) {
        try {
          rtts.push(await keystroke(echo.io, 97 + (i++ % 26), 3000));
        } catch {
          rtts.push(3000);
        }
        await sleep(100);
      }
      sampler.stop();
      const series = sampler.series.map((s) => ({
        t: s.t,
        server: round((s.rss['server'] ?? 0) - base.server, 1),
        agent: round((s.rss['agent'] ?? 0) - base.agent, 1),
      }));
      const half = series.filter((s) => s.t >= (seconds * 1000) / 2);
      const growthSecondHalf = {
        server: round((half.at(-1)?.server ?? 0) - (half[0]?.server ?? 0), 1),
        agent: round((half.at(-1)?.agent ?? 0) - (half[0]?.agent ?? 0), 1),
      };
      const sid = term.frame('hello')?.frame['sessionId'];
      const sessionId = typeof sid === 'string' ? sid : '';
      // End the stalled session from outside (its socket does not read), then drop the socket.
      await fetch(`${this.sys.base}/api/sessions/${sessionId}`, {
        method: 'DELETE',
        headers: { cookie: this.sys.cookie, origin: this.sys.origin },
      });
      term.ws.terminate();
      await echo.close();
      out[p] = {
        seconds,
        bytesReadBeforeStallMiB: round(pausedAt / 1024 / 1024, 1),
        rssGrowthPeakMiB: {
          server: Math.max(...series.map((s) => s.server)),
          agent: Math.max(...series.map((s) => s.agent)),
        },
        rssGrowthSecondHalfMiB: growthSecondHalf,
        otherSessionKeystrokes: dist(rtts),
        series: series.filter((_, k) => k % 4 === 0),
      };
      await sleep(1000);
    }
    this.results['stalled'] = out;
  }

  // ------------------------------------------------------------------ (5) open time
  async openTime(): Promise<void> {
    const perCluster = this.o.quick ? 2 : 5;
    const ns = 'periscope-system';
    const pods = new Map<string, { added?: number; ready?: number; deleted?: number }>();
    const watch = new k8s.Watch(this.kc);
    const req = await watch.watch(
      `/api/v1/namespaces/${ns}/pods`,
      {},
      (type: string, obj: k8s.V1Pod) => {
        const name = obj.metadata?.name ?? '';
        const t = performance.now();
        const e = pods.get(name) ?? {};
        pods.set(name, e);
        if (type === 'ADDED') e.added ??= t;
        if (type === 'DELETED') e.deleted ??= t;
        const ready = obj.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
        if (ready === true) e.ready ??= t;
      },
      () => undefined,
    );
    const runs: Record<string, Record<string, number>[]> = { local: [], 'local-agent': [] };
    const headers = { cookie: this.sys.cookie, origin: this.sys.origin };
    try {
      for (let i = -1; i < perCluster; i++) {
        for (const cluster of ['local', 'local-agent']) {
          this.o.log(`open time ${cluster} ${i < 0 ? 'warm-up' : `${i + 1}/${perCluster}`}`);
          const t0 = performance.now();
          const res = await fetch(`${this.sys.base}/api/clusters/${cluster}/shell/sessions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...headers },
            body: JSON.stringify({}),
          });
          if (res.status !== 201)
            throw new Error(`shell session refused: HTTP ${res.status} ${await res.text()}`);
          const { socketPath, sessionId } = (await res.json()) as { socketPath: string; sessionId: string };
          const tPost = performance.now();
          const term = new Term(`${this.sys.base.replace('http', 'ws')}${socketPath}`, headers);
          const tOpen = await term.opened;
          const deadline = Date.now() + 60_000;
          while (term.firstByteAt === undefined && Date.now() < deadline) {
            const closed = term.frame('closed');
            if (closed) throw new Error(`shell closed while opening: ${JSON.stringify(term.frames)}`);
            await sleep(2);
          }
          const first = term.firstByteAt;
          if (first === undefined) throw new Error('no prompt within 60 s');
          const podName = shellObjectName(sessionId);
          const pod = pods.get(podName) ?? {};
          const at = (phase: string): number =>
            term.frames.find((f) => f.frame['type'] === 'status' && f.frame['phase'] === phase)?.t ?? NaN;
          const hello = term.frame('hello')?.t ?? NaN;
          const r: Record<string, number> = {
            total: first - t0,
            post: tPost - t0,
            upgrade: tOpen - tPost,
            hello: hello - tOpen,
            secret_to_token: at('token') - at('secret'),
            token_to_kubeconfig: at('kubeconfig') - at('token'),
            kubeconfig_to_pod: at('pod') - at('kubeconfig'),
            hello_to_secret: at('secret') - hello,
            pod_to_ready_status: at('ready') - at('pod'),
            ready_to_attaching: at('attaching') - at('ready'),
            attaching_to_first_byte: first - at('attaching'),
            pod_own_start: (pod.ready ?? NaN) - (pod.added ?? NaN),
            ready_detect_lag: at('ready') - (pod.ready ?? NaN),
          };
          r['overhead'] = r['total']! - r['pod_own_start']!;
          // what the overhead would be if the server noticed readiness at once (no poll, no re-check)
          r['overhead_without_ready_lag'] = r['overhead'] - r['ready_detect_lag']!;
          for (const k of Object.keys(r)) r[k] = round(r[k]!, 1);
          if (i >= 0) runs[cluster]!.push(r);
          term.send(Buffer.from('exit\n'));
          await Promise.race([term.closed, sleep(20_000)]);
          term.ws.terminate();
          const gone = Date.now() + 20_000;
          while (pods.get(podName)?.deleted === undefined && Date.now() < gone) await sleep(50);
        }
      }
    } finally {
      (req as { abort?: () => void }).abort?.();
    }
    const summary: Record<string, Record<string, number>> = {};
    for (const [cluster, rs] of Object.entries(runs)) {
      summary[cluster] = {};
      for (const k of Object.keys(rs[0] ?? {})) {
        const xs = rs.map((r) => r[k]!).filter((x) => Number.isFinite(x));
        summary[cluster][k] = round(median(xs), 1);
      }
    }
    this.results['openTime'] = { perCluster, warmupExcluded: 1, p50: summary, runs };
  }

  // ------------------------------------------------------------------ (6) capacity
  async capacity(agentClusters: string[], sessionClusters: string[], sessions: number): Promise<void> {
    const log = pino({ level: 'silent' });
    const out: Record<string, unknown> = { agents: agentClusters.length, sessions };
    const mem = async (): Promise<{ rss: number; heap: number; agentRss: number }> => {
      await forceGc(this.sys.inspectorUrl);
      await forceGc(this.sys.agentInspectorUrl);
      const m = await scrapeMetrics(this.sys.opsBase);
      return {
        rss: procMem(this.sys.serverPid).rss,
        heap: (m['periscope_nodejs_heap_size_used_bytes'] ?? NaN) / 1024 / 1024,
        agentRss: procMem(this.sys.agentPid).rss,
      };
    };
    const headers = { cookie: this.sys.cookie, origin: this.sys.origin };

    const m0 = await mem();
    await loopDelayP99(this.sys.opsBase); // reset the histogram
    await sleep(5000);
    out['loopIdle'] = await loopDelayP99(this.sys.opsBase);

    // Simulated agents: the real registration (token minted by the admin, CSR signed by the
    // server) and the real tunnel client with mTLS, all in this process.
    this.o.log(`capacity: registering ${agentClusters.length} simulated agents`);
    const tRegister = performance.now();
    const identities: { cluster: string; certPem: string; keyPem: string; caPem: string; url: string }[] = [];
    for (let i = 0; i < agentClusters.length; i += 20) {
      const batch = await Promise.all(
        agentClusters.slice(i, i + 20).map(async (cluster) => {
          const minted = await fetch(`${this.sys.base}/api/agents/tokens`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...headers },
            body: JSON.stringify({ cluster }),
          });
          if (minted.status !== 201) throw new Error(`mint for ${cluster}: HTTP ${minted.status}`);
          const { token } = (await minted.json()) as { token: string };
          const { keyPem, csrPem } = await newKeyAndCsr(cluster);
          const r = await register(this.sys.base, { token, cluster, csr: csrPem });
          return { cluster, certPem: r.certificate, keyPem, caPem: r.caBundle, url: r.tunnelUrl };
        }),
      );
      identities.push(...batch);
    }
    out['registerSeconds'] = round((performance.now() - tRegister) / 1000, 1);
    await loopDelayP99(this.sys.opsBase);
    this.o.log('capacity: connecting the simulated agents (40 per second)');
    const tConnect = performance.now();
    const clients: TunnelClient[] = [];
    for (const id of identities) {
      const client = new TunnelClient({
        serverUrl: id.url,
        cluster: id.cluster,
        identity: () => id,
        graceMs: 120_000,
        giveUpAfterMs: 600_000,
        onGiveUp: () => undefined,
        onOpen: (stream) => {
          stream.reset(RESET_CODE.openFailed, 'simulated agent');
        },
        hello: () => ({
          cluster: id.cluster,
          version: 'bench',
          clusterShell: { enabled: false, tiers: [], namespace: 'periscope-system' },
          certNotAfter: new Date(Date.now() + 86_400_000).toISOString(),
        }),
        log,
        backoff: new Backoff({ initialMs: 200, maxMs: 2000, jitter: 0.5, healthyMs: 5000 }),
      });
      clients.push(client);
      client.start();
      if (clients.length % 20 === 0) await sleep(500);
    }
    const connectedCount = async (): Promise<number> => {
      const { agents: list } = (await (await fetch(`${this.sys.base}/api/agents`, { headers })).json()) as {
        agents: { cluster: string; connected: boolean }[];
      };
      return list.filter((a) => a.connected && agentClusters.includes(a.cluster)).length;
    };
    const until = Date.now() + 90_000;
    let connected = 0;
    while ((connected = await connectedCount()) < agentClusters.length && Date.now() < until)
      await sleep(250);
    out['agentsConnected'] = connected;
    out['connectSeconds'] = round((performance.now() - tConnect) / 1000, 1);
    out['loopDuringAgentConnect'] = await loopDelayP99(this.sys.opsBase);
    await sleep(10_000);
    out['loopWithAgents'] = await loopDelayP99(this.sys.opsBase);
    const m1 = await mem();
    out['perAgent'] = {
      rssKiB: round(((m1.rss - m0.rss) * 1024) / agentClusters.length, 1),
      heapKiB: round(((m1.heap - m0.heap) * 1024) / agentClusters.length, 1),
    };
    out['serverRssMiB'] = { baseline: round(m0.rss, 1), withAgents: round(m1.rss, 1) };

    // Concurrent pod exec sessions into one pod running `cat`.
    const perCluster: Record<string, unknown> = {};
    for (const cluster of sessionClusters) {
      this.o.log(`capacity: opening ${sessions} exec sessions on ${cluster}`);
      const before = await mem();
      await loopDelayP99(this.sys.opsBase);
      const tOpen = performance.now();
      const terms: Term[] = [];
      let failed = 0;
      for (let i = 0; i < sessions; i += 10) {
        const batch = await Promise.allSettled(
          Array.from({ length: Math.min(10, sessions - i) }, () =>
            openPodExec(this.sys, cluster, BENCH_NS, BENCH_POD, {
              container: 'main',
              command: ['cat'],
              tty: false,
            }),
          ),
        );
        for (const b of batch) {
          if (b.status === 'fulfilled') terms.push(b.value);
          else failed++;
        }
      }
      // Every session answers a keystroke (the exec is really attached).
      let answering = 0;
      for (const t of terms) {
        try {
          await keystroke(t, 120, 10_000);
          answering++;
        } catch {
          // counted below
        }
      }
      const openSeconds = (performance.now() - tOpen) / 1000;
      const loopOpen = await loopDelayP99(this.sys.opsBase);
      // Steady state with light activity: one keystroke every 25 ms, round-robin over the sessions.
      const rtts: number[] = [];
      const end = performance.now() + (this.o.quick ? 5000 : 10_000);
      for (let i = 0; performance.now() < end; i++) {
        const t = terms[i % terms.length];
        if (!t) break;
        try {
          rtts.push(await keystroke(t, 97 + (i % 26), 5000));
        } catch {
          rtts.push(5000);
        }
        await sleep(25);
      }
      const loopSteady = await loopDelayP99(this.sys.opsBase);
      const after = await mem();
      perCluster[cluster] = {
        opened: terms.length,
        failed,
        answering,
        openSeconds: round(openSeconds, 1),
        perSession: {
          serverRssKiB: round(((after.rss - before.rss) * 1024) / terms.length, 1),
          serverHeapKiB: round(((after.heap - before.heap) * 1024) / terms.length, 1),
          agentRssKiB: round(((after.agentRss - before.agentRss) * 1024) / terms.length, 1),
        },
        serverRssMiB: round(after.rss, 1),
        loopDuringOpen: loopOpen,
        loopSteady,
        keystrokesWithAllOpen: dist(rtts),
      };
      this.o.log(`capacity: closing ${terms.length} sessions on ${cluster}`);
      for (let i = 0; i < terms.length; i += 20)
        await Promise.all(terms.slice(i, i + 20).map((t) => t.close()));
      await sleep(2000);
    }
    out['sessionsByCluster'] = perCluster;
    for (const c of clients) c.stop();
    this.results['capacity'] = out;
  }
}

/** Busy and total jiffies of the whole machine (all CPUs), from /proc/stat. */
function machineCpu(): { busy: number; total: number } {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** SHA-256 of `yes LINE | head -c bytes`, computed here. */
function expectedSha(line: string, bytes: number): string {
  const unit = Buffer.from(line);
  const block = Buffer.concat(Array.from({ length: Math.ceil((1024 * 1024) / unit.length) }, () => unit));
  const h = createHash('sha256');
  let left = bytes;
  while (left > 0) {
    const n = Math.min(block.length, left);
    h.update(n === block.length ? block : block.subarray(0, n));
    left -= n;
  }
  return h.digest('hex');
}
