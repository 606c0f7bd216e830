import { ProvisionError, type CallOptions, type ClusterGateway } from '@periscope/cluster-ops';
import { CLUSTER_OP, RPC_ERROR, type RpcResponse } from '@periscope/protocol';
import pino from 'pino';
import { describe, expect, it } from 'vitest';

import { RpcDispatcher } from '../tunnel/rpc-dispatcher';
import { registerClusterOps, type ShellPolicy } from './cluster-op-handlers';

const SID = '0190f0f0-aaaa-7bbb-8ccc-000000000001';
const PROVISION = {
  sessionId: SID,
  namespace: 'shells',
  tier: 'write',
  subject: 'alice',
  image: 'img:1',
  imagePullPolicy: 'IfNotPresent',
  mode: 'bash',
  tokenSeconds: 3600,
  podStartTimeoutMs: 5000,
};
const POLICY: ShellPolicy = { enabled: true, tiers: ['write', 'admin'], namespace: 'shells' };

type Call = { op: string; req: unknown; signal: AbortSignal | undefined; requestId: string | undefined };

/** A gateway that records each call (with the signal and request id it was given) and answers as `behave` says. */
function fakeGateway(behave: (op: string, opts: CallOptions) => Promise<unknown> = () => Promise.resolve()) {
  const calls: Call[] = [];
  const record = <T>(op: string, req: unknown, opts: CallOptions = {}): Promise<T> => {
    calls.push({ op, req, signal: opts.signal, requestId: opts.requestId });
    return behave(op, opts) as Promise<T>;
  };
  const gateway: ClusterGateway = {
    clusterCa: (opts) => record('ca', {}, opts),
    provisionShell: async (req, onPhase, opts) => {
      onPhase?.('pod', 'creating Pod');
      await record('provision', req, opts);
    },
    teardownShell: (req, opts) => record('teardown', req, opts),
    reapShells: (req, opts) => record('reap', req, opts),
    readPodFile: (req, opts) => record('readFile', req, opts),
    listPods: (req, opts) => record('listPods', req, opts),
    openExec: () => Promise.reject(new Error('not used')),
  };
  return { gateway, calls };
}

function dispatcher(gateway: ClusterGateway, policy: ShellPolicy = POLICY): RpcDispatcher {
  const rpc = new RpcDispatcher('edge', pino({ level: 'silent' }));
  registerClusterOps(rpc, gateway, policy);
  return rpc;
}

let seq = 0;
function ask(
  rpc: RpcDispatcher,
  op: string,
  payload: unknown,
  opts: { deadlineMs?: number; progress?: unknown[] } = {},
): Promise<RpcResponse> {
  return rpc.handle(
    {
      rid: `rid-${String(++seq).padStart(8, '0')}`,
      op,
      deadline: Date.now() + (opts.deadlineMs ?? 5000),
      payload,
    },
    (p) => opts.progress?.push(p),
  );
}

describe('cluster op handlers', () => {
  it('provisions with the checked request, the request’s signal and its progress', async () => {
    const { gateway, calls } = fakeGateway();
    const progress: unknown[] = [];
    expect(
      await ask(dispatcher(gateway), CLUSTER_OP.provision, { ...PROVISION, newField: 1 }, { progress }),
    ).toEqual({
      ok: true,
      result: { ok: true },
    });
    expect(calls).toHaveLength(1);
    expect(calls[0]?.req).toEqual(PROVISION);
    expect(calls[0]?.signal).toBeInstanceOf(AbortSignal);
    expect(progress).toEqual([expect.objectContaining({ phase: 'pod', message: 'creating Pod' })]);
  });

  it.each([
    [
      'the shell is off on this agent',
      { ...POLICY, enabled: false },
      PROVISION,
      /cluster shell is not enabled/,
    ],
    ['another namespace', POLICY, { ...PROVISION, namespace: 'kube-system' }, /only in namespace shells/],
    [
      'a tier the chart did not enable',
      POLICY,
      { ...PROVISION, tier: 'read' },
      /tier read is not in this agent's clusterShell\.tiers \(write, admin\)/,
    ],
  ])(
    'refuses to provision when %s (403), without calling the cluster',
    async (_n, policy, payload, message) => {
      const { gateway, calls } = fakeGateway();
      const r = await ask(dispatcher(gateway, policy), CLUSTER_OP.provision, payload);
      expect(r).toMatchObject({
        ok: false,
        error: { code: RPC_ERROR.kubernetes, status: 403, reason: 'Forbidden' },
      });
      expect(!r.ok && r.error.message).toMatch(message);
      expect(calls).toEqual([]);
    },
  );

  it('refuses teardown and reap outside the shell namespace', async () => {
    const { gateway, calls } = fakeGateway();
    const rpc = dispatcher(gateway);
    expect(await ask(rpc, CLUSTER_OP.teardown, { sessionId: SID, namespace: 'other' })).toMatchObject({
      ok: false,
      error: { status: 403 },
    });
    expect(
      await ask(rpc, CLUSTER_OP.reap, { namespace: 'other', liveSessionIds: [], graceMs: 0 }),
    ).toMatchObject({
      ok: false,
      error: { status: 403 },
    });
    expect(calls).toEqual([]);
  });

  it('answers each operation in the shape its reply declares', async () => {
    const { gateway } = fakeGateway((op) => {
      if (op === 'reap') return Promise.resolve([SID]);
      if (op === 'listPods')
        return Promise.resolve([{ namespace: 'ns', name: 'p', phase: 'Running', containers: ['c'] }]);
      if (op === 'readFile') return Promise.resolve({ content: 'ls', truncated: false });
      if (op === 'ca') return Promise.resolve({ caPem: 'PEM', server: 'https://k', source: 'kubeconfig' });
      return Promise.resolve();
    });
    const rpc = dispatcher(gateway);
    expect(await ask(rpc, CLUSTER_OP.reap, { namespace: 'shells', liveSessionIds: [], graceMs: 0 })).toEqual({
      ok: true,
      result: { removed: [SID] },
    });
    expect(await ask(rpc, CLUSTER_OP.listPods, { limit: 5 })).toEqual({
      ok: true,
      result: { pods: [{ namespace: 'ns', name: 'p', phase: 'Running', containers: ['c'] }] },
    });
    expect(
      await ask(rpc, CLUSTER_OP.readFile, {
        namespace: 'ns',
        pod: 'p',
        container: 'c',
        path: '/log',
        maxBytes: 9,
      }),
    ).toEqual({ ok: true, result: { content: 'ls', truncated: false } });
    expect(await ask(rpc, CLUSTER_OP.ca, {})).toEqual({
      ok: true,
      result: { caPem: 'PEM', server: 'https://k', source: 'kubeconfig' },
    });
    expect(await ask(rpc, CLUSTER_OP.teardown, { sessionId: SID, namespace: 'shells' })).toEqual({
      ok: true,
      result: { ok: true },
    });
  });

  it('hands each shell operation its tunnel request id, the Audit-ID of its apiserver calls', async () => {
    const { gateway, calls } = fakeGateway((op) =>
      Promise.resolve(
        op === 'reap'
          ? []
          : op === 'readFile'
            ? { content: '', truncated: false }
            : op === 'listPods'
              ? []
              : undefined,
      ),
    );
    const rpc = dispatcher(gateway);
    const ops: [string, unknown][] = [
      [CLUSTER_OP.provision, PROVISION],
      [CLUSTER_OP.teardown, { sessionId: SID, namespace: 'shells' }],
      [CLUSTER_OP.reap, { namespace: 'shells', liveSessionIds: [], graceMs: 0 }],
      [CLUSTER_OP.readFile, { namespace: 'shells', pod: 'p', container: 'shell', path: '/log', maxBytes: 9 }],
      [CLUSTER_OP.listPods, { limit: 5 }],
    ];
    const sent: string[] = [];
    for (const [op, payload] of ops) {
      const requestRid = `0190f0f0-aaaa-7bbb-8ccc-${String(sent.length).padStart(12, '0')}`;
      sent.push(requestRid);
      expect(
        await rpc.handle({ rid: requestRid, op, deadline: Date.now() + 5000, payload }, () => undefined),
      ).toMatchObject({ ok: true });
    }
    expect(calls.map((c) => c.requestId)).toEqual(sent);
  });

  it('refuses a bad payload with E_RPC_BAD_REQUEST naming the field, without calling the cluster', async () => {
    const { gateway, calls } = fakeGateway();
    const r = await ask(dispatcher(gateway), CLUSTER_OP.listPods, { limit: 0 });
    expect(r).toEqual({
      ok: false,
      error: { code: RPC_ERROR.badRequest, message: 'pods.list: limit must not be less than 1' },
    });
    expect(calls).toEqual([]);
  });

  it('carries Kubernetes failures across with their status (and the provisioning phase as reason)', async () => {
    const rpc = dispatcher(
      fakeGateway((op) => {
        if (op === 'provision')
          return Promise.reject(new ProvisionError('pod failed (HTTP 422): bad', 'pod', 422));
        if (op === 'listPods')
          return Promise.reject(Object.assign(new Error('forbidden'), { statusCode: 403 }));
        return Promise.reject(new Error('socket hang up'));
      }).gateway,
    );
    expect(await ask(rpc, CLUSTER_OP.provision, PROVISION)).toEqual({
      ok: false,
      error: {
        code: RPC_ERROR.kubernetes,
        message: 'pod failed (HTTP 422): bad',
        status: 422,
        reason: 'pod',
      },
    });
    expect(await ask(rpc, CLUSTER_OP.listPods, { limit: 1 })).toEqual({
      ok: false,
      error: { code: RPC_ERROR.kubernetes, message: 'forbidden', status: 403 },
    });
    expect(await ask(rpc, CLUSTER_OP.ca, {})).toEqual({
      ok: false,
      error: { code: RPC_ERROR.internal, message: 'socket hang up' },
    });
  });

  it('the request’s deadline reaches the cluster call: its signal aborts and the call ends', async () => {
    const { gateway, calls } = fakeGateway(
      (_op, opts) =>
        new Promise((_, reject) => {
          opts.signal?.addEventListener('abort', () => {
            reject(new Error('listing pods was aborted (its deadline passed)'));
          });
        }),
    );
    const started = Date.now();
    const r = await ask(dispatcher(gateway), CLUSTER_OP.listPods, { limit: 1 }, { deadlineMs: 150 });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(calls[0]?.signal?.aborted).toBe(true);
    expect(r).toMatchObject({
      ok: false,
      error: { message: 'listing pods was aborted (its deadline passed)' },
    });
  });
});
