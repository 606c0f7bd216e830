import { describe, expect, it } from 'vitest';

import { parsePodList } from './ops';
import { parseAgentHello, RpcError } from './rpc';

const OLD_AGENT = {
  cluster: 'edge-1',
  version: '0.1.0',
  clusterShell: { enabled: true, tiers: ['admin'], namespace: 'periscope-system' },
  certNotAfter: '2027-01-01T00:00:00.000Z',
};

describe(parseAgentHello.name, () => {
  it('accepts the hello of an agent that predates the namespace fields', () => {
    expect(parseAgentHello(OLD_AGENT)).toEqual(OLD_AGENT);
  });

  it('accepts the hello of an agent that predates the cluster shell (the shell is then off)', () => {
    const { clusterShell: _, ...older } = OLD_AGENT;
    const parsed = parseAgentHello(older);
    expect(parsed).toEqual(older);
    expect(parsed.clusterShell).toBeUndefined();
  });

  it('keeps the agent namespace and its protected namespaces (deduplicated)', () => {
    expect(
      parseAgentHello({
        ...OLD_AGENT,
        namespace: 'periscope-agent',
        protectedNamespaces: ['periscope-agent', 'periscope-system', 'periscope-agent'],
        unknown: 'ignored',
      }),
    ).toEqual({
      ...OLD_AGENT,
      namespace: 'periscope-agent',
      protectedNamespaces: ['periscope-agent', 'periscope-system'],
    });
  });

  it.each([
    ['not an object', 'hello'],
    ['no cluster', { ...OLD_AGENT, cluster: '' }],
    ['a cluster that is not a string', { ...OLD_AGENT, cluster: 42 }],
    ['no version', { ...OLD_AGENT, version: undefined }],
    ['a clusterShell that is not an object', { ...OLD_AGENT, clusterShell: 'yes' }],
    ['a clusterShell of null', { ...OLD_AGENT, clusterShell: null }],
    [
      'clusterShell.enabled as a string',
      { ...OLD_AGENT, clusterShell: { ...OLD_AGENT.clusterShell, enabled: 'true' } },
    ],
    ['an array', [OLD_AGENT]],
    ['null', null],
    [
      'a bad shell namespace',
      { ...OLD_AGENT, clusterShell: { ...OLD_AGENT.clusterShell, namespace: 'A B' } },
    ],
    ['an unknown tier', { ...OLD_AGENT, clusterShell: { ...OLD_AGENT.clusterShell, tiers: ['root'] } }],
    ['a bad namespace', { ...OLD_AGENT, namespace: '../etc' }],
    ['protected namespaces that are not names', { ...OLD_AGENT, protectedNamespaces: ['ok', 7] }],
    [
      'too many protected namespaces',
      { ...OLD_AGENT, protectedNamespaces: Array.from({ length: 65 }, (_, i) => `n${i}`) },
    ],
  ])('refuses %s', (_what, hello) => {
    expect(() => parseAgentHello(hello)).toThrow(RpcError);
  });
});

describe('parsePodList excludeNamespaces', () => {
  it('passes a list of namespace names through and refuses anything else', () => {
    expect(parsePodList({ limit: 10, excludeNamespaces: ['periscope-system'] })).toEqual({
      limit: 10,
      excludeNamespaces: ['periscope-system'],
    });
    expect(parsePodList({ limit: 10 })).toEqual({ limit: 10 });
    expect(() => parsePodList({ limit: 10, excludeNamespaces: ['x,metadata.name=y'] })).toThrow(RpcError);
    expect(() => parsePodList({ limit: 10, excludeNamespaces: 'periscope-system' })).toThrow(RpcError);
  });
});
