import { describe, expect, it } from 'vitest';

import { DEFAULT_AUTH } from '../config/auth-file';
import { impersonationFor } from './impersonation';

const alice = {
  subject: 'alice',
  email: 'a@x',
  groups: ['sre', '', 'system:masters'],
  tier: 'triage' as const,
};
const authz = DEFAULT_AUTH.authorization;

describe(impersonationFor.name, () => {
  it('shared mode runs as the server itself', () => {
    expect(impersonationFor(alice, { ...authz, mode: 'shared' })).toBeUndefined();
  });

  it('tier mode sends the subject and exactly the tier group, with the session id extra', () => {
    expect(impersonationFor(alice, { ...authz, mode: 'tier' }, 's1')).toEqual({
      user: 'alice',
      groups: ['periscope-tier:triage'],
      extra: { 'audit.periscope.io/session-id': ['s1'], 'audit.periscope.io/actor': ['alice'] },
    });
    expect(impersonationFor({ ...alice, tier: undefined }, { ...authz, mode: 'tier' })?.groups).toEqual([]);
  });

  it('raw mode prefixes every group and drops system: ones, so system:masters cannot be reached', () => {
    expect(impersonationFor(alice, { ...authz, mode: 'raw', groupPrefix: 'oidc:' })?.groups).toEqual([
      'oidc:sre',
    ]);
    // Even a prefix the config would refuse cannot produce a system group here.
    expect(
      impersonationFor(
        { ...alice, groups: ['tem:masters', 'sre'] },
        { ...authz, mode: 'raw', groupPrefix: 'sys' },
      )?.groups,
    ).toEqual(['syssre']);
  });

  it('refuses a system: subject in every mode', () => {
    for (const mode of ['shared', 'tier', 'raw'] as const)
      expect(() =>
        impersonationFor({ ...alice, subject: 'system:kube-controller-manager' }, { ...authz, mode }),
      ).toThrow(/starts with "system:", which Kubernetes reserves/);
    expect(() =>
      impersonationFor({ ...alice, subject: 'System:Admin' }, { ...authz, mode: 'tier' }),
    ).toThrow();
  });
});
