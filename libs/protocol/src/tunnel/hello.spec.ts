import { describe, expect, it } from 'vitest';

import { parseOpReply } from './contract';
import { AgentHello, RPC_ERROR, RPC_OP, RpcError } from './rpc';

const OLD_AGENT = {
  cluster: 'edge-1',
  version: '0.1.0',
  clusterShell: { enabled: true, tiers: ['admin'], namespace: 'periscope-system' },
  certNotAfter: '2027-01-01T00:00:00.000Z',
};

const parseHello = (v: unknown): AgentHello => parseOpReply(RPC_OP.hello, v, 'agent hello');

describe('agent hello', () => {
  it('accepts the hello of an agent that predates the namespace fields', () => {
    const hello = parseHello(OLD_AGENT);
    expect(hello).toBeInstanceOf(AgentHello);
    expect(hello).toEqual(OLD_AGENT);
  });

  it('accepts the hello of an agent that predates the cluster shell (the shell is then off)', () => {
    const { clusterShell: _, ...older } = OLD_AGENT;
    const parsed = parseHello(older);
    expect(parsed).toEqual(older);
    expect(parsed.clusterShell).toBeUndefined();
    expect(parsed.namespace).toBeUndefined();
  });

  it('keeps the agent namespace and its protected namespaces (deduplicated), drops unknown fields', () => {
    const hello = parseHello({
      ...OLD_AGENT,
      namespace: 'periscope-agent',
      protectedNamespaces: ['periscope-agent', 'periscope-system', 'periscope-agent'],
      unknown: 'ignored',
    });
    expect(hello).toEqual({
      ...OLD_AGENT,
      namespace: 'periscope-agent',
      protectedNamespaces: ['periscope-agent', 'periscope-system'],
    });
    expect(hello).not.toHaveProperty('unknown');
  });

  it.each([
    ['not an object', 'hello', 'must be an object'],
    ['an array', [OLD_AGENT], 'must be an object'],
    ['null', null, 'must be an object'],
    ['no cluster', { ...OLD_AGENT, cluster: '' }, 'cluster must be text of 1 to 63 characters'],
    [
      'a cluster of 64 characters',
      { ...OLD_AGENT, cluster: 'a'.repeat(64) },
      'cluster must be text of 1 to 63 characters',
    ],
    [
      'a cluster that is not a string',
      { ...OLD_AGENT, cluster: 42 },
      'cluster must be text of 1 to 63 characters',
    ],
    ['no version', { ...OLD_AGENT, version: undefined }, 'version must be text of 1 to 128 characters'],
    [
      'a version of 129 characters',
      { ...OLD_AGENT, version: 'v'.repeat(129) },
      'version must be text of 1 to 128 characters',
    ],
    [
      'a certificate expiry of 65 characters',
      { ...OLD_AGENT, certNotAfter: '2'.repeat(65) },
      'certNotAfter must be text of 1 to 64 characters',
    ],
    [
      'a clusterShell that is not an object',
      { ...OLD_AGENT, clusterShell: 'yes' },
      'clusterShell must be an object',
    ],
    ['a clusterShell of null', { ...OLD_AGENT, clusterShell: null }, 'clusterShell must be an object'],
    [
      'clusterShell.enabled as a string',
      { ...OLD_AGENT, clusterShell: { ...OLD_AGENT.clusterShell, enabled: 'true' } },
      'clusterShell.enabled must be true or false',
    ],
    [
      'a bad shell namespace',
      { ...OLD_AGENT, clusterShell: { ...OLD_AGENT.clusterShell, namespace: 'A B' } },
      'clusterShell.namespace must be a namespace name',
    ],
    [
      'an unknown tier',
      { ...OLD_AGENT, clusterShell: { ...OLD_AGENT.clusterShell, tiers: ['root'] } },
      'clusterShell.tiers: each value must be one of the following values: read, triage, write, maintain, admin',
    ],
    [
      'six tiers',
      { ...OLD_AGENT, clusterShell: { ...OLD_AGENT.clusterShell, tiers: Array(6).fill('read') } },
      'clusterShell.tiers must contain no more than 5 elements',
    ],
    ['a bad namespace', { ...OLD_AGENT, namespace: '../etc' }, 'namespace must be a namespace name'],
    ['a namespace of null', { ...OLD_AGENT, namespace: null }, 'namespace must be a namespace name'],
    [
      'protected namespaces that are not names',
      { ...OLD_AGENT, protectedNamespaces: ['ok', 7] },
      'protectedNamespaces must be a list of at most 64 namespace names',
    ],
    [
      'too many protected namespaces',
      { ...OLD_AGENT, protectedNamespaces: Array.from({ length: 65 }, (_, i) => `n${i}`) },
      'protectedNamespaces must be a list of at most 64 namespace names',
    ],
  ])('refuses %s with E_BAD_REPLY naming the field', (_what, hello, message) => {
    let caught: unknown;
    try {
      parseHello(hello);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RpcError);
    expect(caught).toMatchObject({ code: RPC_ERROR.badReply });
    expect((caught as RpcError).message).toMatch(/^agent hello: /);
    expect((caught as RpcError).message).toContain(message);
  });

  it('says one thing once: a clusterShell that is a string is one problem', () => {
    expect(() => parseHello({ ...OLD_AGENT, clusterShell: 'yes' })).toThrow(
      new RpcError({ code: RPC_ERROR.badReply, message: 'agent hello: clusterShell must be an object' }),
    );
  });
});
