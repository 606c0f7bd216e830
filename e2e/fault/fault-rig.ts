/**
 * The fault suite's rig: the whole system (e2e/system/system.ts: a local control plane, the
 * built server and agent as child processes), two operators, and the checks every fault case
 * ends with: no shell Pods or Secrets left, every audited open has its close, no live session
 * and every cap slot free (a new session opens), and server and agent memory back near the
 * baseline taken after a warm-up.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

import { afterAll, afterEach, beforeAll, expect } from 'vitest';

import { startSystem, type DevUser, type RunningSystem, type SystemProcess } from '../system/system';
import { devLogin } from '../support/dev-login';
import { TerminalClient } from '../support/terminal-client';
import { until } from '../support/wait';

export const SHELL_NAMESPACE = 'periscope-system';
/** Label every session Secret and Pod carries (libs/cluster-ops/src/shell/shell-objects.ts). */
export const SESSION_LABEL = 'periscope.io/session-id';

/** Server grace for a dropped agent tunnel (PERISCOPE_AGENT_TUNNEL_GRACE_SECONDS; minimum 5). */
export const TUNNEL_GRACE_SECONDS = 8;
/** How long a session waits for its browser to come back (PERISCOPE_RESUME_GRACE_SECONDS). */
export const RESUME_GRACE_SECONDS = 10;

/**
 * Memory: a Node process that is never told to collect garbage does not come back to a
 * byte-exact RSS. V8 keeps the heap pages it grew into until a major GC gives them back, and
 * glibc keeps freed malloc memory (where Buffers live) in its arenas. Measured here after each
 * case (and a settle of up to 30 s), server and agent end between 30 MiB below and 15 MiB above
 * their post-warm-up baseline (~160 MiB each). What a leak of ours looks like is growth per session or
 * per byte moved: a lost session keeps its 1 MiB replay buffer plus its tunnel windows
 * (2 × 256 KiB), and an unbounded buffer under a flood grows by tens of MiB per second. 40 MiB is
 * about three times the settle noise, so a pass is not luck, and is smaller than what one
 * unbounded buffer accumulates in a single second of flood or what a case leaking its sessions'
 * state over a few dozen sessions would leave. It cannot see one leaked session's state; the
 * session, cap-slot and object checks do.
 * Since server and agent run with PERISCOPE_HEAP_GROWING_PERCENT=100 (V8 may let the old
 * generation grow by one live heap, ≈ 55–60 MiB, before a full collection), an idle process can
 * sit above its baseline by up to that much: after the stall case the server ended +34, +21 and
 * +47.5 MiB above it in three CI runs on a loaded machine (2026-12-06). The margin is 64 MiB: still
 * below what an unbounded buffer gathers in one or two seconds of flood.
 */
export const RSS_MARGIN_MIB = 64;

/**
 * The reaper's timers (`PERISCOPE_REAPER_INTERVAL_SECONDS`, `PERISCOPE_REAPER_GRACE_SECONDS`)
 * are knobs of the server now; cases whose clean-up depends on the reaper (a server crash, an
 * apiserver outage during teardown) need them short. When the built server does not know them
 * those assertions are skipped with this reason.
 */
export const REAPER_KNOBS = ((): boolean => {
  try {
    return readFileSync(resolve(__dirname, '../../apps/server/dist/config/server-env.js'), 'utf8').includes(
      'PERISCOPE_REAPER_GRACE_SECONDS',
    );
  } catch {
    return false;
  }
})();
export const REAPER_SKIP_REASON =
  'needs PERISCOPE_REAPER_INTERVAL_SECONDS / PERISCOPE_REAPER_GRACE_SECONDS in the built server ' +
  '(apps/server/src/cluster-shell/shell-reaper.service.ts hard-codes a first run after 60 s, every 5 min, ' +
  'grace 10 min): rebuild apps/server';
/** Reaper settings for cases that rely on it: first run and every 5 s, objects older than 5 s. */
export const FAST_REAPER_ENV: Record<string, string> = {
  PERISCOPE_REAPER_INTERVAL_SECONDS: '5',
  PERISCOPE_REAPER_GRACE_SECONDS: '5',
};

/** The victim's owner and the bystander's owner: both admin tier, two cluster shells each. */
export const FAULT_USERS: DevUser[] = [
  { subject: 'admin', email: 'admin@periscope.local', groups: ['platform-admins'] },
  { subject: 'ops', email: 'ops@periscope.local', groups: ['platform-admins'] },
];

export interface Shell {
  sessionId: string;
  cluster: string;
  user: string;
  client: TerminalClient;
}

export interface Rss {
  server: number;
  agent: number;
}

export interface AuditEvent {
  id: number;
  time: string;
  verb: string;
  actor: string;
  cluster: string;
  sessionId: string | null;
  outcome: string;
  body: Record<string, unknown>;
}

export interface LiveSession {
  sessionId: string;
  kind: string;
  cluster: string;
  subject: string;
  state: string;
  bytesOut: number;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** VmRSS of a process, in MiB. */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m?.[1]) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}

/** Process log lines not worth keeping for a failure report. */
const NOISY =
  /"msg":"(tunnel request|request completed|request received|tunnel stream event|Mapped \{|[A-Za-z]+ dependencies initialized)/;

export class FaultRig {
  private readonly cookies = new Map<string, string>();
  private readonly logs: string[] = [];
  /** server or agent exits nobody asked for */
  readonly unexpectedExits: string[] = [];
  private tag = 0;

  private constructor(readonly sys: RunningSystem) {}

  static async start(
    opts: { env?: Record<string, string>; agentEnv?: Record<string, string>; tunnelProxy?: boolean } = {},
  ): Promise<FaultRig> {
    const holder: { rig?: FaultRig } = {};
    const early: string[] = [];
    let sys: RunningSystem;
    try {
      sys = await startSystem({
        users: FAULT_USERS,
        tunnelProxy: opts.tunnelProxy ?? false,
        env: {
          PERISCOPE_LOG_LEVEL: 'info',
          PERISCOPE_AGENT_TUNNEL_GRACE_SECONDS: String(TUNNEL_GRACE_SECONDS),
          PERISCOPE_RESUME_GRACE_SECONDS: String(RESUME_GRACE_SECONDS),
          PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER: '2',
          ...opts.env,
        },
        agentEnv: { PERISCOPE_LOG_LEVEL: 'info', ...opts.agentEnv },
        processLog: (name, line) => {
          if (NOISY.test(line)) return;
          const l = `[${name}] ${line.length > 600 ? `${line.slice(0, 600)}…` : line}`;
          const into = holder.rig ? holder.rig.logs : early;
          into.push(l);
          if (into.length > 400) into.splice(0, into.length - 400);
        },
        onUnexpectedExit: (name, code) => {
          holder.rig?.unexpectedExits.push(`${name} exited (${code ?? 'signal'})`);
        },
      });
    } catch (err) {
      process.stderr.write(`--- process log lines of the failed start ---\n${early.join('\n')}\n`);
      throw err;
    }
    const rig = new FaultRig(sys);
    rig.logs.push(...early);
    holder.rig = rig;
    return rig;
  }

  get base(): string {
    return `http://127.0.0.1:${this.sys.port}`;
  }

  get origin(): string {
    return this.sys.url;
  }

  /** The last process log lines (for a failing case). */
  logTail(lines = 120): string {
    return this.logs.slice(-lines).join('\n');
  }

  async stop(): Promise<void> {
    await this.sys.stop();
  }

  /** Sign-ins live in the server's memory: after a server restart every cookie is gone. */
  forgetSignIns(): void {
    this.cookies.clear();
  }

  async cookie(user: string): Promise<string> {
    let c = this.cookies.get(user);
    if (c === undefined) {
      c = await devLogin(this.base, user);
      this.cookies.set(user, c);
    }
    return c;
  }

  async headers(user: string): Promise<Record<string, string>> {
    return { cookie: await this.cookie(user), origin: this.origin };
  }

  async api(path: string, init: { method?: string; body?: unknown; user?: string } = {}): Promise<Response> {
    return fetch(`${this.base}${path}`, {
      method: init.method ?? 'GET',
      headers: { 'content-type': 'application/json', ...(await this.headers(init.user ?? 'admin')) },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
  }

  /** POST …/shell/sessions, then the socket; does not wait for the shell. */
  async connectShell(cluster: string, user: string): Promise<Shell> {
    const res = await this.api(`/api/clusters/${cluster}/shell/sessions`, { method: 'POST', body: {}, user });
    const text = await res.text();
    expect(res.status, `opening a shell on ${cluster} as ${user}: ${text}`).toBe(201);
    const { socketPath, sessionId } = JSON.parse(text) as { socketPath: string; sessionId: string };
    const client = new TerminalClient(
      `ws://127.0.0.1:${this.sys.port}${socketPath}`,
      await this.headers(user),
    );
    await client.opened;
    return { sessionId, cluster, user, client };
  }

  /** A cluster shell that answered a command. */
  async openShell(cluster: string, user: string): Promise<Shell> {
    const shell = await this.connectShell(cluster, user);
    await this.echo(shell, 'ready', 60_000);
    return shell;
  }

  /**
   * Types `echo <tag>-$((40+2))` and waits for `<tag>-42` in the output (the echoed keystrokes
   * do not match); answers the round trip in ms.
   */
  async echo(shell: Shell, tag: string, timeoutMs = 30_000): Promise<number> {
    const t = `${tag}${++this.tag}`;
    const started = Date.now();
    shell.client.type(`echo ${t}-$((40+2))\n`);
    await shell.client.waitText(`"${t}" from ${shell.cluster}`, new RegExp(`${t}-42`), timeoutMs);
    return Date.now() - started;
  }

  /**
   * Waits for the session's `closed` frame (the socket itself closes once teardown is done);
   * answers it and the `error` frame, if any.
   */
  async closedWithin(
    shell: Shell,
    ms: number,
  ): Promise<{ closed: Record<string, unknown> | undefined; error: Record<string, unknown> | undefined }> {
    try {
      await until(
        'the closed frame',
        () => shell.client.frame('closed') !== undefined || shell.client.closeCode !== undefined,
        ms,
      );
    } catch {
      throw new Error(
        `session ${shell.sessionId} on ${shell.cluster} did not close within ${ms} ms; frames: ${JSON.stringify(shell.client.frames.slice(-5))}`,
      );
    }
    return { closed: shell.client.frame('closed'), error: shell.client.frame('error') };
  }

  /** A planned close from the browser (close frame); answers the `closed` frame. */
  async close(shell: Shell): Promise<Record<string, unknown> | undefined> {
    shell.client.control({ type: 'close' });
    const { closed } = await this.closedWithin(shell, 60_000);
    await shell.client.closed;
    return closed;
  }

  /**
   * Session objects: Pods, Secrets and ServiceAccounts in the shell namespace, and the sessions'
   * ClusterRoles and ClusterRoleBindings (`pod/…`, `secret/…`, `serviceaccount/…`, …).
   */
  async shellObjects(): Promise<string[]> {
    const out = await this.sys.cluster.kubectlOk([
      '-n',
      SHELL_NAMESPACE,
      'get',
      'pods,secrets,serviceaccounts,clusterroles,clusterrolebindings',
      '-l',
      SESSION_LABEL,
      '-o',
      'name',
    ]);
    return out
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '');
  }

  async waitNoShellObjects(timeoutMs: number): Promise<void> {
    let last: string[] = [];
    try {
      await until(
        'no session objects left',
        async () => {
          last = await this.shellObjects();
          return last.length === 0;
        },
        timeoutMs,
      );
    } catch {
      throw new Error(`session objects left after ${timeoutMs} ms: ${last.join(', ')}`);
    }
  }

  /** Every live session, as an admin sees them. */
  async liveSessions(): Promise<LiveSession[]> {
    const res = await this.api('/api/sessions');
    expect(res.status).toBe(200);
    return ((await res.json()) as { sessions: LiveSession[] }).sessions;
  }

  /** The whole audit log, oldest first, as an auditor (admin) sees it. */
  async audit(): Promise<AuditEvent[]> {
    const all: AuditEvent[] = [];
    let before: number | null = null;
    for (;;) {
      const res = await this.api(`/api/audit?limit=500${before !== null ? `&before=${before}` : ''}`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as { events: AuditEvent[]; nextBefore: number | null };
      all.push(...page.events);
      if (page.nextBefore === null) break;
      before = page.nextBefore;
    }
    return all.reverse();
  }

  /** Every `*_open` has its `*_close` (same session); answers the closes by session id. */
  async expectEveryOpenClosed(): Promise<Map<string, AuditEvent>> {
    const events = await this.audit();
    const closes = new Map<string, AuditEvent>();
    for (const e of events) if (e.verb.endsWith('_close') && e.sessionId) closes.set(e.sessionId, e);
    const unclosed = events.filter(
      (e) =>
        e.verb.endsWith('_open') &&
        e.sessionId !== null &&
        closes.get(e.sessionId)?.verb !== e.verb.replace(/_open$/, '_close'),
    );
    expect(
      unclosed.map((e) => `${e.verb} ${e.sessionId ?? ''} (${e.cluster})`),
      'audited opens without a close',
    ).toEqual([]);
    const perSession = new Map<string, number>();
    for (const e of events)
      if (e.verb.endsWith('_close') && e.sessionId)
        perSession.set(e.sessionId, (perSession.get(e.sessionId) ?? 0) + 1);
    expect(
      [...perSession].filter(([, n]) => n > 1).map(([s]) => s),
      'sessions closed more than once',
    ).toEqual([]);
    return closes;
  }

  async closeEvent(sessionId: string): Promise<AuditEvent | undefined> {
    return (await this.audit()).find((e) => e.sessionId === sessionId && e.verb.endsWith('_close'));
  }

  pidOf(name: SystemProcess): number {
    const pid = this.sys.pid(name);
    if (pid === undefined) throw new Error(`the ${name} is not running`);
    return pid;
  }

  rss(): Rss {
    return { server: rssMiB(this.pidOf('server')), agent: rssMiB(this.pidOf('agent')) };
  }

  /** The agent as GET /api/agents shows it. */
  async agentView(): Promise<{ connected: boolean; connectedSince: string | null; openStreams: number }> {
    const res = await this.api('/api/agents');
    const { agents } = (await res.json()) as {
      agents: { cluster: string; connected: boolean; connectedSince: string | null; openStreams: number }[];
    };
    const a = agents.find((x) => x.cluster === 'local-agent');
    if (!a) throw new Error('no local-agent in GET /api/agents');
    return a;
  }

  /**
   * Until the server offers the cluster shell on `local-agent`: the agent is connected and past
   * the tunnel handshake (its /readyz answers as soon as its socket is up, a little earlier).
   */
  async waitAgentReady(timeoutMs = 60_000): Promise<void> {
    await until(
      'the cluster shell to be available on local-agent',
      async () => {
        const res = await this.api('/api/clusters');
        if (res.status !== 200) return false;
        const { clusters } = (await res.json()) as {
          clusters: { name: string; clusterShellEnabled: boolean }[];
        };
        return clusters.find((c) => c.name === 'local-agent')?.clusterShellEnabled === true;
      },
      timeoutMs,
    );
  }

  /**
   * Warm-up (code paths loaded and compiled, pools and caches filled): a few sessions on both
   * clusters for both users; then the memory baseline after a settle.
   */
  async warmUp(): Promise<Rss> {
    await this.waitAgentReady();
    for (let round = 0; round < 2; round++) {
      const shells = await Promise.all([
        this.openShell('local', 'admin'),
        this.openShell('local-agent', 'admin'),
        this.openShell('local', 'ops'),
        this.openShell('local-agent', 'ops'),
      ]);
      for (const s of shells) s.client.type('seq 1 20000 | tail -n 1\n');
      await Promise.all(shells.map((s) => s.client.waitText('seq output', /[\r\n]20000\r\n/, 30_000)));
      await Promise.all(shells.map((s) => this.close(s)));
    }
    await this.waitNoShellObjects(30_000);
    await sleep(3000);
    return this.rss();
  }

  /**
   * The end of every case: no live session, no session Pod or Secret, every open closed, cap
   * slots free (the victim's owner opens its two shells again, one per cluster, and they work),
   * and server and agent RSS back within RSS_MARGIN_MIB of `baseline`.
   */
  async expectCleanEnd(baseline: Rss, opts: { objectsTimeoutMs?: number } = {}): Promise<void> {
    await until('no live sessions', async () => (await this.liveSessions()).length === 0, 30_000).catch(
      async () => {
        throw new Error(`live sessions left: ${JSON.stringify(await this.liveSessions())}`);
      },
    );
    await this.waitNoShellObjects(opts.objectsTimeoutMs ?? 30_000);
    await this.expectEveryOpenClosed();

    await this.waitAgentReady();
    // Cap slots: 'admin' may hold two cluster shells; both must open (a leaked slot answers 429).
    const probes = await Promise.all([
      this.openShell('local', 'admin'),
      this.openShell('local-agent', 'admin'),
    ]);
    const refused = await this.api('/api/clusters/local/shell/sessions', { method: 'POST', body: {} });
    expect(refused.status, 'a third shell for the same user is over the cap').toBe(429);
    for (const p of probes) expect(await this.close(p)).toMatchObject({ reason: 'client_close' });
    await this.waitNoShellObjects(30_000);
    expect(await this.liveSessions()).toEqual([]);
    await this.expectEveryOpenClosed();

    await this.expectRssNear(baseline);
    expect(this.unexpectedExits).toEqual([]);
  }

  /** Polls (up to 30 s) until server and agent RSS are within the margin of the baseline. */
  async expectRssNear(baseline: Rss): Promise<Rss> {
    let now = this.rss();
    const within = (r: Rss): boolean =>
      r.server <= baseline.server + RSS_MARGIN_MIB && r.agent <= baseline.agent + RSS_MARGIN_MIB;
    const deadline = Date.now() + 30_000;
    while (!within(now) && Date.now() < deadline) {
      await sleep(1000);
      now = this.rss();
    }
    const fmt = (r: Rss): string => `server ${r.server.toFixed(1)} MiB, agent ${r.agent.toFixed(1)} MiB`;
    process.stderr.write(`[fault] RSS baseline ${fmt(baseline)}; now ${fmt(now)}\n`);
    expect(now.server, `server RSS (baseline ${baseline.server.toFixed(1)} MiB)`).toBeLessThanOrEqual(
      baseline.server + RSS_MARGIN_MIB,
    );
    expect(now.agent, `agent RSS (baseline ${baseline.agent.toFixed(1)} MiB)`).toBeLessThanOrEqual(
      baseline.agent + RSS_MARGIN_MIB,
    );
    return now;
  }
}

/**
 * The hooks every fault file needs: start the system and take the memory baseline before the
 * cases, stop it after, and print the last process log lines when a case fails. `ready` hands
 * the rig and baseline to the file.
 */
export function useFaultRig(
  opts: Parameters<typeof FaultRig.start>[0],
  ready: (rig: FaultRig, baseline: Rss) => void,
): void {
  let rig: FaultRig | undefined;
  beforeAll(async () => {
    rig = await FaultRig.start(opts);
    ready(rig, await rig.warmUp());
  }, 240_000);
  afterAll(async () => {
    await rig?.stop(); // undefined when the start failed
  }, 60_000);
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail' && ctx.task.fails !== true)
      process.stderr.write(`--- last process log lines (${ctx.task.name}) ---\n${rig?.logTail() ?? ''}\n`);
  });
}
