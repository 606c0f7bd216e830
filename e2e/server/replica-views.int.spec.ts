import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { RECORD_LEASE } from '../../apps/server/src/shared-state/shared-state.service';
import { TerminalSessions } from '../../apps/server/src/terminal/terminal-sessions.service';
import { AgentLinks } from '../../apps/server/src/tunnel/agent-links';
import {
  startReplicaTrio,
  TRIO_PREFIX as PREFIX,
  type ReplicaTrio,
  type TrioReplica,
} from '../support/replica-trio';
import { TerminalClient } from '../support/terminal-client';
import { until } from '../support/wait';

/*
 * The views with several replicas (issue 18): three real server instances share one real
 * redis-server; a real agent holds the tunnel of cluster `edge` on replica B
 * (e2e/support/replica-trio.ts). `GET /api/clusters` and `GET /api/agents` answer the agent
 * cluster connected, with the same fields, from A, B and C (B publishes its status to Redis,
 * every replica merges it); `GET /api/sessions` lists the same sessions from every replica (one
 * held by B opened through A, one held by C); an agent's request record is forwarded to B; after
 * the agent stops, every replica shows it disconnected well within the lease.
 */

let started: ReplicaTrio | undefined;
function trio(): ReplicaTrio {
  if (started === undefined) throw new Error('the replicas did not start (see beforeAll)');
  return started;
}
const replica = (id: 'fwd-a' | 'fwd-b' | 'fwd-c'): TrioReplica => trio().replica(id);
const all = (): TrioReplica[] => ['fwd-a', 'fwd-b', 'fwd-c'].map((id) => replica(id as 'fwd-a'));

beforeAll(async () => {
  started = await startReplicaTrio(inject('cluster').binDir);
}, 240_000);

afterAll(async () => {
  await started?.stop();
}, 120_000);

async function getJson<T>(via: TrioReplica, path: string): Promise<T> {
  const res = await fetch(`${via.base}${path}`, { headers: trio().headers() });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${path} on ${via.id}: HTTP ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

interface ClusterView {
  name: string;
  clusterShellEnabled: boolean;
  clusterShellReason?: string;
  connection: { state: string; since: string | null; lastSeen: string | null; rttMs: number | null };
}
type Agent = Record<string, unknown> & { cluster: string; connected: boolean };
interface Session {
  sessionId: string;
  kind: string;
  cluster: string;
  subject: string;
  startedAt: string;
  state: string;
  replica?: string;
}

const clusters = async (via: TrioReplica): Promise<ClusterView[]> =>
  (await getJson<{ clusters: ClusterView[] }>(via, '/api/clusters')).clusters;
const agents = async (via: TrioReplica): Promise<Agent[]> =>
  (await getJson<{ agents: Agent[] }>(via, '/api/agents')).agents;
const sessions = async (via: TrioReplica): Promise<Session[]> =>
  (await getJson<{ sessions: Session[] }>(via, '/api/sessions')).sessions;

/** A view without what moves between two reads (the last heartbeat, the round trip, streams). */
function stableCluster(c: ClusterView | undefined): unknown {
  if (c === undefined) return undefined;
  const { lastSeen: _l, rttMs: _r, ...connection } = c.connection;
  return { ...c, connection };
}
function stableAgent(a: Agent | undefined): unknown {
  if (a === undefined) return undefined;
  const { lastSeen: _l, lastRttMs: _r, openStreams: _o, ...rest } = a;
  return rest;
}

describe('the cluster, agent and session views with three replicas', () => {
  it('GET /api/clusters and GET /api/agents answer the agent cluster connected, the same, from A, B and C', async () => {
    const edge = async (via: TrioReplica): Promise<ClusterView | undefined> =>
      (await clusters(via)).find((c) => c.name === 'edge');
    await until(
      'edge connected on every replica',
      async () => {
        for (const r of all()) if ((await edge(r))?.connection.state !== 'connected') return false;
        return true;
      },
      15_000,
    );
    const views = await Promise.all(all().map((r) => clusters(r)));
    const [onA, onB, onC] = views.map((v) => v.find((c) => c.name === 'edge'));
    expect(onB?.connection.state).toBe('connected');
    expect(onB?.connection.since).toMatch(/^\d{4}-/);
    expect(stableCluster(onA)).toEqual(stableCluster(onB));
    expect(stableCluster(onC)).toEqual(stableCluster(onB));
    // B's own flags (shell readiness from the agent's hello) are what A and C show.
    expect(onA?.clusterShellEnabled).toBe(onB?.clusterShellEnabled);
    for (const v of views) {
      expect(v.find((c) => c.name === 'ghost')?.connection.state).toBe('never-connected');
      expect(v.find((c) => c.name === 'lab')?.connection.state).toBe('direct');
    }

    const lists = await Promise.all(all().map((r) => agents(r)));
    const [aA, aB, aC] = lists.map((l) => l.find((x) => x.cluster === 'edge'));
    expect(aB).toMatchObject({ connected: true, replica: 'fwd-b' });
    expect(aB?.version).toEqual(expect.any(String));
    expect(Object.keys(aA ?? {}).sort()).toEqual(Object.keys(aB ?? {}).sort());
    expect(stableAgent(aA)).toEqual(stableAgent(aB));
    expect(stableAgent(aC)).toEqual(stableAgent(aB));
    // The record in Redis carries the status, never a secret.
    const record = (await trio().store.get(`${PREFIX}agentview:live:edge`)) ?? '';
    expect(JSON.parse(record)).toMatchObject({ replica: 'fwd-b', version: aB?.version });
    expect(record).not.toMatch(/BEGIN|token|secret/i);
    // Under a lease: a replica that dies leaves it for at most 30 s.
    const ttl = await trio().store.pttl(`${PREFIX}agentview:live:edge`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(RECORD_LEASE.leaseMs);
  });

  it("an agent's request record is answered through A and C (forwarded to B, which holds the ring)", async () => {
    const pods = await fetch(`${replica('fwd-a').base}/api/clusters/edge/pods?namespace=${trio().ns}`, {
      headers: trio().headers(),
    });
    expect(pods.status).toBe(200);
    const ring = replica('fwd-b').app.get(AgentLinks).link('edge')?.ring.toArray() ?? [];
    const rid = ring.filter((r) => r.outcome === 'ok').at(-1)?.rid;
    expect(rid).toEqual(expect.any(String));
    for (const via of [replica('fwd-a'), replica('fwd-c')]) {
      const rec = await getJson<{ rid: string; cluster: string; server: unknown }>(
        via,
        `/api/agents/edge/requests/${encodeURIComponent(rid ?? '')}`,
      );
      expect(rec).toMatchObject({ rid, cluster: 'edge' });
      expect(rec.server).not.toBeNull();
    }
  });

  it('GET /api/sessions lists the same sessions from every replica: one held by B opened through A, one held by C', async () => {
    const [a, b, c] = all();
    if (!a || !b || !c) throw new Error('three replicas');
    const onB = await trio().openExec(a, {});
    // A pod exec on the kubeconfig cluster through C: held by C.
    const res = await fetch(`${c.base}/api/clusters/lab/pods/${trio().ns}/app/exec/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...trio().headers() },
      body: JSON.stringify({ container: 'main' }),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const opened = (await res.json()) as { socketPath: string; sessionId: string };
    const onC = new TerminalClient(`${c.ws}${opened.socketPath}`, trio().headers());
    await onC.opened;
    expect(b.app.get(TerminalSessions).get(onB.sessionId)).toBeDefined();
    expect(c.app.get(TerminalSessions).get(opened.sessionId)).toBeDefined();
    const ids = [onB.sessionId, opened.sessionId].sort();
    const listed = async (): Promise<Session[][]> => Promise.all(all().map((r) => sessions(r)));
    // Listed by every replica, and attached (a snapshot may still say `starting` for up to a second).
    await until(
      'both sessions listed as attached by every replica',
      async () =>
        (await listed()).every((l) =>
          ids.every((id) => l.some((s) => s.sessionId === id && s.state === 'attached')),
        ),
      10_000,
    );
    const stable = (l: Session[]): unknown =>
      l.map((s) => ({
        sessionId: s.sessionId,
        kind: s.kind,
        cluster: s.cluster,
        subject: s.subject,
        startedAt: s.startedAt,
        state: s.state,
        replica: s.replica,
      }));
    const [lA, lB, lC] = await listed();
    expect(stable(lA ?? [])).toEqual(stable(lB ?? []));
    expect(stable(lC ?? [])).toEqual(stable(lB ?? []));
    expect(lA?.find((s) => s.sessionId === onB.sessionId)).toMatchObject({
      cluster: 'edge',
      kind: 'pod_exec',
    });
    expect(lB?.find((s) => s.sessionId === opened.sessionId)).toMatchObject({
      cluster: 'lab',
      replica: 'fwd-c',
    });
    // each row names the replica holding the session, the same through every replica
    expect(lC?.find((s) => s.sessionId === onB.sessionId)?.replica).toBe('fwd-b');
    expect(lB?.find((s) => s.sessionId === onB.sessionId)?.replica).toBe('fwd-b');
    // One lease-bound snapshot per replica, named in the set of live snapshots; no sign-in id in it.
    const snapshot = (await trio().store.get(`${PREFIX}sessview:fwd-b`)) ?? '';
    expect(snapshot).toContain(onB.sessionId);
    expect(snapshot).not.toMatch(/loginId|ticket|cookie/i);
    expect(await trio().store.pttl(`${PREFIX}sessview:fwd-b`)).toBeLessThanOrEqual(RECORD_LEASE.leaseMs);
    expect(await trio().store.zscore(`${PREFIX}sessview:replicas`, 'fwd-c')).not.toBeNull();

    // Ended: gone from every replica's list within seconds.
    for (const client of [onB.client, onC]) {
      client.type('exit\n');
      await client.closed;
    }
    await until(
      'both sessions gone from every list',
      async () => (await listed()).every((l) => !l.some((s) => ids.includes(s.sessionId))),
      10_000,
    );
  }, 120_000);

  it('after the agent stops, every replica shows it disconnected within the lease', async () => {
    const started = Date.now();
    await trio().stopAgent();
    await until(
      'edge disconnected on every replica',
      async () => {
        for (const r of all()) {
          const edge = (await clusters(r)).find((c) => c.name === 'edge');
          if (edge?.connection.state !== 'disconnected') return false;
          if ((await agents(r)).find((x) => x.cluster === 'edge')?.connected !== false) return false;
        }
        return true;
      },
      RECORD_LEASE.leaseMs,
    );
    // The live record went at once (no waiting for its lease); the last-seen one stays.
    expect(Date.now() - started).toBeLessThan(RECORD_LEASE.leaseMs);
    expect(await trio().store.get(`${PREFIX}agentview:live:edge`)).toBeNull();
    for (const r of all()) {
      const edge = (await clusters(r)).find((c) => c.name === 'edge');
      expect(edge?.connection.lastSeen).toMatch(/^\d{4}-/);
      expect(edge?.clusterShellEnabled).toBe(false);
      expect((await agents(r)).find((x) => x.cluster === 'edge')).toMatchObject({
        connected: false,
        replica: null,
      });
    }
  }, 60_000);
});
