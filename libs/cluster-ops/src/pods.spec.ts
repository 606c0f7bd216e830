import { describe, expect, it } from 'vitest';

import { podListQuery } from './pods';

describe(podListQuery.name, () => {
  it('asks the apiserver to leave excluded namespaces out, so they do not count against the limit', () => {
    const q = new URLSearchParams(
      podListQuery({ limit: 2000, excludeNamespaces: ['periscope-system', 'kube-system'] }),
    );
    expect(q.get('limit')).toBe('2000');
    expect(q.get('fieldSelector')).toBe(
      'metadata.namespace!=periscope-system,metadata.namespace!=kube-system',
    );
  });

  it('sends no field selector when nothing is excluded', () => {
    expect(podListQuery({ limit: 5 })).toBe('limit=5');
    expect(podListQuery({ limit: 5, excludeNamespaces: [] })).toBe('limit=5');
  });
});

describe('podListQuery by name', () => {
  it('asks for the one pod named, in its namespace, never the first pod of the namespace', () => {
    const q = new URLSearchParams(
      podListQuery({ limit: 1, namespace: 'apps', name: 'b', excludeNamespaces: ['periscope-system'] }),
    );
    expect(q.get('limit')).toBe('1');
    expect(q.get('fieldSelector')).toBe('metadata.name=b,metadata.namespace!=periscope-system');
    expect(
      new URLSearchParams(podListQuery({ limit: 1, namespace: 'apps', name: 'b' })).get('fieldSelector'),
    ).toBe('metadata.name=b');
  });

  it('ignores a name without a namespace (a name is only unique within one)', () => {
    expect(podListQuery({ limit: 5, name: 'b' })).toBe('limit=5');
  });
});
