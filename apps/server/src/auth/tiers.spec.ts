import { describe, expect, it } from 'vitest';

import type { Principal } from './session-store';
import { isAuditor, resolveTier, tierAtLeast } from './tiers';

describe(resolveTier.name, () => {
  const map = { devs: 'read', sre: 'maintain', admins: 'admin', qa: 'triage' } as const;
  it('takes the highest tier of all matching groups', () => {
    expect(resolveTier(['devs', 'sre', 'qa'], map)).toBe('maintain');
    expect(resolveTier(['admins', 'devs'], map)).toBe('admin');
  });
  it('falls back to the default tier, or none', () => {
    expect(resolveTier(['unknown'], map, 'read')).toBe('read');
    expect(resolveTier([], map)).toBeUndefined();
  });
  it('never counts a system: group, even a mapped one', () => {
    expect(resolveTier(['system:masters', 'devs'], { ...map, 'system:masters': 'admin' })).toBe('read');
    expect(resolveTier(['System:Masters'], { 'System:Masters': 'admin' })).toBeUndefined();
  });
  it('orders tiers read < triage < write < maintain < admin', () => {
    expect(tierAtLeast('admin', 'maintain')).toBe(true);
    expect(tierAtLeast('write', 'maintain')).toBe(false);
    expect(tierAtLeast(undefined, 'read')).toBe(false);
  });
});

describe(isAuditor.name, () => {
  const who = (tier: Principal['tier'], groups: string[]): Principal => ({
    subject: 's',
    email: '',
    groups,
    tier,
  });
  it('is the admin tier or a member of auditAdminGroups', () => {
    expect(isAuditor(who('admin', ['admins']), [])).toBe(true);
    expect(isAuditor(who('read', ['devs', 'sec-audit']), ['sec-audit'])).toBe(true);
    expect(isAuditor(who('read', ['devs']), ['sec-audit'])).toBe(false);
    expect(isAuditor(who(undefined, []), [])).toBe(false);
  });
});
