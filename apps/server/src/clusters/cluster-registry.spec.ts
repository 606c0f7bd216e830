import type { AgentHello } from '@periscope/protocol';
import type { PinoLogger } from 'nestjs-pino';
import { describe, expect, it } from 'vitest';

import { loadServerConfig } from '../config/server-config';
import type { AgentLinks } from '../tunnel/agent-links';
import { ClusterRegistry } from './cluster-registry.service';

const CLUSTERS = `
clusters:
  - { name: home, backend: in-cluster }
  - { name: edge, backend: agent, protectedNamespaces: [vault] }
  - { name: old-edge, backend: agent }
  - { name: lab, backend: kubeconfig, kubeconfigPath: /lab.kubeconfig, protectedNamespaces: [ci, ci] }
`;
const AUTH = 'authorization: { mode: tier }\ndev: { users: [{ subject: a, groups: [x] }] }\n';

function registry(env: Record<string, string>, hellos: Record<string, Partial<AgentHello>>): ClusterRegistry {
  const config = loadServerConfig(
    {
      PERISCOPE_AUTH_MODE: 'dev',
      PERISCOPE_AUTH_FILE: '/auth.yaml',
      PERISCOPE_CLUSTERS_FILE: '/clusters.yaml',
      ...env,
    },
    (p) => ({ '/auth.yaml': AUTH, '/clusters.yaml': CLUSTERS })[p] ?? '',
  );
  const links = {
    link: (c: string) => (hellos[c] ? { hello: hellos[c], connected: true } : undefined),
  } as unknown as AgentLinks;
  return new ClusterRegistry(config, links, { warn: () => undefined } as unknown as PinoLogger);
}

describe('ClusterRegistry.protectedNamespaces', () => {
  const hello = {
    cluster: 'edge',
    namespace: 'periscope-agent',
    protectedNamespaces: ['periscope-agent', 'kube-system', 'shells'],
  };

  it('joins the shell namespace, the server’s own (in-cluster), the agent’s report and the clusters file', () => {
    const r = registry(
      {
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
        PERISCOPE_CLUSTER_SHELL_NAMESPACE: 'shells',
        PERISCOPE_PROTECTED_NAMESPACES: 'periscope,kube-system',
      },
      { edge: hello, 'old-edge': { cluster: 'old-edge' } },
    );
    expect(r.protectedNamespaces('home')).toEqual(['kube-system', 'periscope', 'shells']);
    expect(r.protectedNamespaces('edge')).toEqual(['kube-system', 'periscope-agent', 'shells', 'vault']);
    // An agent that predates the report: the shell namespace and the clusters file still count.
    expect(r.protectedNamespaces('old-edge')).toEqual(['shells']);
    // The server's own namespaces belong to its own cluster only.
    expect(r.protectedNamespaces('lab')).toEqual(['ci', 'shells']);
  });

  it('leaves the shell namespace out while the cluster shell is off', () => {
    const r = registry({ PERISCOPE_CLUSTER_SHELL_NAMESPACE: 'shells' }, {});
    expect(r.protectedNamespaces('lab')).toEqual(['ci']);
    expect(r.protectedNamespaces('home')).toEqual([]);
  });

  it('answers 404 for an unknown cluster', () => {
    expect(() => registry({}, {}).protectedNamespaces('nope')).toThrow(/no cluster named nope/);
  });
});
