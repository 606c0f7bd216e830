import { describe, expect, it } from 'vitest';

import { parsePodReadFile, parseShellProvision, parseShellReap, parseShellTeardown } from './ops';
import { RpcError } from './rpc';

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

describe('cluster op payloads', () => {
  it('accepts a well-formed provision request', () => {
    expect(parseShellProvision({ ...OK, nodeSelector: { pool: 'ops' } })).toEqual({
      ...OK,
      nodeSelector: { pool: 'ops' },
    });
  });

  it.each([
    ['a path in the session id', { ...OK, sessionId: '../x' }],
    ['an unknown tier', { ...OK, tier: 'root' }],
    ['a namespace that is not a DNS label', { ...OK, namespace: 'Kube_System' }],
    ['a too short token', { ...OK, tokenSeconds: 60 }],
    ['an unknown pull policy', { ...OK, imagePullPolicy: 'Sometimes' }],
    ['a non-string label value', { ...OK, extraLabels: { a: 1 } }],
    ['not an object', 'x'],
  ])('refuses %s', (_n, payload) => {
    expect(() => parseShellProvision(payload)).toThrow(RpcError);
  });

  it('checks teardown, reap and read-file requests', () => {
    expect(parseShellTeardown({ sessionId: SID, namespace: 'ns' })).toEqual({
      sessionId: SID,
      namespace: 'ns',
    });
    expect(() => parseShellReap({ namespace: 'ns', liveSessionIds: ['nope'], graceMs: 0 })).toThrow(RpcError);
    expect(() =>
      parsePodReadFile({ namespace: 'ns', pod: 'p', container: 'c', path: 'relative', maxBytes: 10 }),
    ).toThrow(RpcError);
    expect(
      parsePodReadFile({ namespace: 'ns', pod: 'p', container: 'c', path: '/tmp/a', maxBytes: 10 }).path,
    ).toBe('/tmp/a');
    const read = { namespace: 'ns', pod: 'p', container: 'c', path: '/tmp/a', maxBytes: 10 };
    expect(parsePodReadFile({ ...read, timeoutMs: 5000 }).timeoutMs).toBe(5000);
    expect(() => parsePodReadFile({ ...read, timeoutMs: 3_600_000 })).toThrow(RpcError);
  });
});
