import { describe, expect, it } from 'vitest';

import { parseClustersFile } from './clusters-file';

describe('parseClustersFile protectedNamespaces', () => {
  it('defaults to none and keeps a listed namespace once', () => {
    const { clusters, problems } = parseClustersFile(
      'clusters:\n  - { name: a, backend: agent }\n  - { name: b, backend: agent, protectedNamespaces: [vault, vault, ci] }\n',
      'clusters.yaml',
    );
    expect(problems).toEqual([]);
    expect(clusters.map((c) => c.protectedNamespaces)).toEqual([[], ['vault', 'ci']]);
  });

  it.each([
    ['a string', 'vault'],
    ['a name that is not a DNS label', '[Vault_1]'],
    ['too many names', `[${Array.from({ length: 65 }, (_, i) => `n${i}`).join(', ')}]`],
  ])('refuses %s, naming the setting', (_what, value) => {
    const { clusters, problems } = parseClustersFile(
      `clusters:\n  - { name: a, backend: agent, protectedNamespaces: ${value} }\n`,
      'clusters.yaml',
    );
    expect(clusters).toEqual([]);
    expect(problems).toEqual([
      expect.objectContaining({
        setting: 'clusters.yaml: clusters[0].protectedNamespaces',
        allowed: expect.stringMatching(/a list of at most 64 namespace names/) as unknown,
      }),
    ]);
  });
});

describe('parseClustersFile strict keys', () => {
  it('refuses an unknown key of a cluster (a typo) naming the file, the path and the known keys', () => {
    const { clusters, problems } = parseClustersFile(
      'clusters:\n  - { name: a, backend: agent, protectedNamespace: [vault] }\n',
      'clusters.yaml',
    );
    expect(clusters).toEqual([]);
    expect(problems).toEqual([
      {
        setting: 'clusters.yaml: clusters[0].protectedNamespace',
        allowed: expect.stringMatching(/^one of the keys name, backend, .*protectedNamespaces/) as unknown,
      },
    ]);
  });

  it('refuses unknown top-level and exec keys', () => {
    const { problems } = parseClustersFile(
      'clusters:\n  - { name: a, backend: agent, exec: { idle: 5 } }\ndefaults: {}\n',
      'c.yaml',
    );
    expect(problems.map((p) => p.setting).sort()).toEqual([
      'c.yaml: clusters[0].exec.idle',
      'c.yaml: defaults',
    ]);
    expect(problems.find((p) => p.setting.endsWith('idle'))?.allowed).toMatch(
      /^one of the keys enabled, idleSeconds/,
    );
  });

  it('checks only the fields of the backend named, and keeps only those', () => {
    const { clusters, problems } = parseClustersFile(
      'clusters:\n  - { name: a, backend: agent }\n  - { name: b, backend: kubeconfig, kubeconfigPath: /k, arn: nope }\n',
      'c.yaml',
    );
    expect(problems).toEqual([]);
    expect(clusters[1]).toEqual({
      name: 'b',
      backend: 'kubeconfig',
      kubeconfigPath: '/k',
      tags: {},
      exec: {},
      clusterShell: {},
      protectedNamespaces: [],
    });
  });

  it('says what a non-list clusters key and a non-mapping entry should be', () => {
    expect(parseClustersFile('clusters: lab\n', 'c.yaml').problems).toEqual([
      { setting: 'c.yaml: clusters', value: 'lab', allowed: 'a top-level "clusters:" list' },
    ]);
    expect(parseClustersFile('clusters:\n  - lab\n', 'c.yaml').problems).toHaveLength(1);
    expect(parseClustersFile('', 'c.yaml')).toEqual({ clusters: [], problems: [] });
  });
});
