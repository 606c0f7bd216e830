import { describe, expect, it } from 'vitest';

import { parseOpRequest } from './contract';
import { CLUSTER_OP } from './ops';
import { RPC_ERROR, RpcError } from './rpc';

const SID = '0190f0f0-aaaa-7bbb-8ccc-000000000001';
const OK = {
  sessionId: SID,
  namespace: 'periscope-system',
  tier: 'admin',
  subject: 'alice',
  image: 'img:1',
  imagePullPolicy: 'IfNotPresent',
  mode: 'bash',
  tokenSeconds: 28_800,
  podStartTimeoutMs: 30_000,
};
const READ = { namespace: 'ns', pod: 'p', container: 'c', path: '/tmp/a', maxBytes: 10 };
const LIST = { limit: 10 };

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The RpcError a bad request is refused with. */
function refusal(fn: () => unknown): RpcError {
  try {
    fn();
  } catch (err) {
    if (err instanceof RpcError) return err;
    throw err;
  }
  throw new Error('the request was accepted');
}

describe('cluster op requests', () => {
  it('accepts a well-formed provision request and drops fields it does not know', () => {
    const req = parseOpRequest(CLUSTER_OP.provision, {
      ...OK,
      nodeSelector: { pool: 'ops' },
      extraLabels: { team: 'a' },
      priorityClassName: 'high',
      fromANewerServer: true,
    });
    expect(req).toEqual({
      ...OK,
      nodeSelector: { pool: 'ops' },
      extraLabels: { team: 'a' },
      priorityClassName: 'high',
    });
    expect(req).not.toHaveProperty('fromANewerServer');
  });

  it('carries the pod template (resources, tolerations, annotations, pull secrets) to the agent', () => {
    const template = {
      resources: { requests: { cpu: '100m' }, limits: { memory: '1Gi' } },
      tolerations: [
        { key: 'dedicated', operator: 'Equal', value: 'ops', effect: 'NoSchedule' },
        { operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 60 },
      ],
      annotations: { 'example.com/owner': 'sre' },
      imagePullSecrets: ['regcred'],
    };
    expect(JSON.parse(JSON.stringify(parseOpRequest(CLUSTER_OP.provision, { ...OK, ...template })))).toEqual({
      ...OK,
      ...template,
    });
  });

  it.each([
    [
      'a resource that is not a quantity',
      { resources: { limits: { cpu: 'lots' } } },
      'resources.limits must map cpu',
    ],
    [
      'a toleration effect',
      { tolerations: [{ key: 'a', effect: 'Never' }] },
      'tolerations.0.effect must be one of',
    ],
    [
      'a pull secret name',
      { imagePullSecrets: ['Reg Cred'] },
      'imagePullSecrets: each value must be a Secret name',
    ],
    ['a non-string annotation', { annotations: { a: 1 } }, 'annotations must map strings to strings'],
  ])('refuses a pod template with %s', (_n, extra, message) => {
    const err = refusal(() => parseOpRequest(CLUSTER_OP.provision, { ...OK, ...extra }));
    expect(err.message).toContain(message);
  });

  it.each([
    ['a path in the session id', { ...OK, sessionId: '../x' }, 'sessionId must be a session id (a UUID)'],
    ['no session id', { ...OK, sessionId: undefined }, 'sessionId must be a session id'],
    ['an unknown tier', { ...OK, tier: 'root' }, 'tier must be one of the following values'],
    [
      'a namespace that is not a DNS label',
      { ...OK, namespace: 'Kube_System' },
      'namespace must be a namespace name',
    ],
    [
      'a subject of 513 characters',
      { ...OK, subject: 'a'.repeat(513) },
      'subject must be text of 1 to 512 characters',
    ],
    ['an empty subject', { ...OK, subject: '' }, 'subject must be text of 1 to 512 characters'],
    ['an image with a space', { ...OK, image: 'a b' }, 'image must be an image reference'],
    [
      'an image of 513 characters',
      { ...OK, image: 'a'.repeat(513) },
      'image must be shorter than or equal to 512',
    ],
    ['an unknown pull policy', { ...OK, imagePullPolicy: 'Sometimes' }, 'imagePullPolicy must be one of'],
    ['another mode', { ...OK, mode: 'zsh' }, 'mode must be one of the following values: bash, kubectl'],
    ['a too short token', { ...OK, tokenSeconds: 599 }, 'tokenSeconds must not be less than 600'],
    [
      'a token past a week',
      { ...OK, tokenSeconds: 7 * 86_400 + 1 },
      'tokenSeconds must not be greater than 604800',
    ],
    ['a fractional token lifetime', { ...OK, tokenSeconds: 600.5 }, 'tokenSeconds must be an integer number'],
    ['a token lifetime as text', { ...OK, tokenSeconds: '600' }, 'tokenSeconds must be an integer number'],
    [
      'a pod start under a second',
      { ...OK, podStartTimeoutMs: 999 },
      'podStartTimeoutMs must not be less than 1000',
    ],
    [
      'a pod start past 10 min',
      { ...OK, podStartTimeoutMs: 600_001 },
      'podStartTimeoutMs must not be greater than 600000',
    ],
    [
      'a non-string label value',
      { ...OK, extraLabels: { a: 1 } },
      'extraLabels must map strings to strings, at most 64 entries',
    ],
    [
      '65 node selector labels',
      { ...OK, nodeSelector: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) },
      'nodeSelector must map strings to strings',
    ],
    ['a node selector of null', { ...OK, nodeSelector: null }, 'nodeSelector must map strings to strings'],
    [
      'a bad priority class',
      { ...OK, priorityClassName: 'A!' },
      'priorityClassName must be a PriorityClass name',
    ],
    ['not an object', 'x', 'must be an object'],
  ])('refuses %s, naming the field', (_n, payload, message) => {
    const err = refusal(() => parseOpRequest(CLUSTER_OP.provision, payload));
    expect(err.code).toBe(RPC_ERROR.badRequest);
    expect(err.message).toMatch(/^shell\.provision: /);
    expect(err.message).toContain(message);
  });

  it('checks teardown requests', () => {
    expect(parseOpRequest(CLUSTER_OP.teardown, { sessionId: SID, namespace: 'ns' })).toEqual({
      sessionId: SID,
      namespace: 'ns',
    });
    expect(refusal(() => parseOpRequest(CLUSTER_OP.teardown, { sessionId: SID })).message).toBe(
      'shell.teardown: namespace must be a namespace name (DNS label)',
    );
  });

  it('checks reap requests', () => {
    const ok = { namespace: 'ns', liveSessionIds: [SID], graceMs: 0 };
    expect(parseOpRequest(CLUSTER_OP.reap, ok)).toEqual(ok);
    expect(
      refusal(() => parseOpRequest(CLUSTER_OP.reap, { ...ok, liveSessionIds: [SID, 'nope'] })).message,
    ).toBe('shell.reap: liveSessionIds: each value must be a session id (a UUID)');
    expect(
      refusal(() => parseOpRequest(CLUSTER_OP.reap, { ...ok, liveSessionIds: Array(100_001).fill(SID) }))
        .message,
    ).toContain('liveSessionIds must contain no more than 100000 elements');
    expect(refusal(() => parseOpRequest(CLUSTER_OP.reap, { ...ok, graceMs: -1 })).message).toContain(
      'graceMs must not be less than 0',
    );
    expect(refusal(() => parseOpRequest(CLUSTER_OP.reap, { ...ok, graceMs: 86_400_001 })).message).toContain(
      'graceMs must not be greater than 86400000',
    );
  });

  it('checks read-file requests', () => {
    expect(parseOpRequest(CLUSTER_OP.readFile, READ)).toEqual(READ);
    expect(parseOpRequest(CLUSTER_OP.readFile, { ...READ, timeoutMs: 5000 }).timeoutMs).toBe(5000);
    for (const [payload, message] of [
      [{ ...READ, path: 'relative' }, 'path must be an absolute path'],
      [{ ...READ, path: '/a\0b' }, 'path must be an absolute path'],
      [{ ...READ, path: `/${'a'.repeat(1024)}` }, 'path must be shorter than or equal to 1024'],
      [{ ...READ, pod: 'P' }, 'pod must be a pod name (DNS subdomain)'],
      [{ ...READ, container: 'a.b' }, 'container must be a container name (DNS label)'],
      [{ ...READ, maxBytes: 0 }, 'maxBytes must not be less than 1'],
      [{ ...READ, maxBytes: 8 * 1024 * 1024 + 1 }, 'maxBytes must not be greater than 8388608'],
      [{ ...READ, timeoutMs: 99 }, 'timeoutMs must not be less than 100'],
      [{ ...READ, timeoutMs: 3_600_000 }, 'timeoutMs must not be greater than 60000'],
      [{ ...READ, timeoutMs: null }, 'timeoutMs must be an integer number'],
    ] as const)
      expect(refusal(() => parseOpRequest(CLUSTER_OP.readFile, payload)).message).toMatch(
        new RegExp(`^pod\\.readFile: .*${escape(message)}`),
      );
  });

  it('checks pod list requests, impersonation included', () => {
    const imp = { user: 'alice', groups: ['devs'], extra: { 'periscope.io/tier': ['write'] } };
    const req = {
      ...LIST,
      namespace: 'ns',
      name: 'web-0',
      impersonate: imp,
      excludeNamespaces: ['kube-system'],
    };
    expect(parseOpRequest(CLUSTER_OP.listPods, req)).toEqual(req);
    expect(parseOpRequest(CLUSTER_OP.listPods, LIST)).toEqual(LIST);
    for (const [payload, message] of [
      [{ limit: 0 }, 'limit must not be less than 1'],
      [{ limit: 5001 }, 'limit must not be greater than 5000'],
      [{ ...LIST, namespace: 'A' }, 'namespace must be a namespace name'],
      [
        { ...LIST, impersonate: { user: '', groups: [] } },
        'impersonate.user must be text of 1 to 512 characters',
      ],
      [{ ...LIST, impersonate: { user: 'a', groups: 'devs' } }, 'impersonate.groups must be an array'],
      [
        { ...LIST, impersonate: { user: 'a', groups: Array(257).fill('g') } },
        'impersonate.groups must contain no more than 256',
      ],
      [
        { ...LIST, impersonate: { user: 'a', groups: ['g'.repeat(513)] } },
        'impersonate.groups: each value must be shorter than or equal to 512',
      ],
      [
        { ...LIST, impersonate: { user: 'a', groups: [], extra: { k: 'v' } } },
        'impersonate.extra must map strings to lists of strings',
      ],
      [{ ...LIST, impersonate: 'alice' }, 'impersonate must be an object'],
      [
        { ...LIST, excludeNamespaces: ['x,metadata.name=y'] },
        'excludeNamespaces: each value must be a namespace name',
      ],
      [
        { ...LIST, excludeNamespaces: 'periscope-system' },
        'excludeNamespaces must be a list of at most 64 namespace names',
      ],
      [
        { ...LIST, excludeNamespaces: Array.from({ length: 65 }, (_, i) => `n${i}`) },
        'excludeNamespaces must contain no more than 64',
      ],
    ] as const)
      expect(refusal(() => parseOpRequest(CLUSTER_OP.listPods, payload)).message).toMatch(
        new RegExp(`^pods\\.list: .*${escape(message)}`),
      );
  });

  it('takes anything for an operation without parameters (an older server may send {} or nothing)', () => {
    expect(parseOpRequest(CLUSTER_OP.ca, {})).toEqual({});
    expect(parseOpRequest(CLUSTER_OP.ca, undefined)).toEqual({});
    expect(parseOpRequest(CLUSTER_OP.ca, { unexpected: 1 })).toEqual({});
  });
});
