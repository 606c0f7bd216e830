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
