import { describe, expect, it } from 'vitest';

import { groupPrefixProblem, isSystemName, withoutSystemGroups } from './system-names';

describe(isSystemName.name, () => {
  it('matches Kubernetes system names, without regard to case', () => {
    for (const n of ['system:masters', 'system:serviceaccount:kube-system:x', 'System:Nodes', 'system:'])
      expect(isSystemName(n)).toBe(true);
    for (const n of ['systems:x', 'periscope:system:masters', ' system:masters', 'alice', ''])
      expect(isSystemName(n)).toBe(false);
  });
});

describe(groupPrefixProblem.name, () => {
  it('refuses prefixes that an IdP group could turn into a system group', () => {
    for (const p of ['', 's', 'sys', 'SYSTEM', 'system:', 'system:oidc:'])
      expect(groupPrefixProblem(p)).toBeDefined();
    for (const p of ['periscope:', 'oidc:', 'systems:', 'x-system:'])
      expect(groupPrefixProblem(p)).toBeUndefined();
  });
});

describe(withoutSystemGroups.name, () => {
  it('drops system groups and says which', () => {
    expect(withoutSystemGroups(['sre', 'system:masters', 'dev', 'System:Nodes'])).toEqual({
      groups: ['sre', 'dev'],
      dropped: ['system:masters', 'System:Nodes'],
    });
  });
});
