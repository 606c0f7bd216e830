import { describe, expect, it } from 'vitest';

import { isAllowed, readClaim, readGroups, readString } from './claims';

describe(readGroups.name, () => {
  it('reads a top-level list of strings, dropping duplicates and non-strings', () => {
    expect(readGroups({ groups: ['a', 'b', 'a', 3, null, ''] }, 'groups')).toEqual(['a', 'b']);
  });

  it('accepts a single string as one group', () => {
    expect(readGroups({ role: 'admins' }, 'role')).toEqual(['admins']);
  });

  it('walks dotted paths into nested claims (Keycloak realm_access.roles)', () => {
    const claims = { realm_access: { roles: ['sre', 'dev'] }, resource_access: { app: { roles: ['x'] } } };
    expect(readGroups(claims, 'realm_access.roles')).toEqual(['sre', 'dev']);
    expect(readGroups(claims, 'resource_access.app.roles')).toEqual(['x']);
    expect(readGroups(claims, 'realm_access.missing')).toBeUndefined();
    expect(readGroups(claims, 'realm_access.roles.deeper')).toBeUndefined();
  });

  it('prefers a claim whose name contains dots as-is (Auth0 namespaced claims)', () => {
    const claims = { 'https://example.com/groups': ['ops'], https: { '//example': 'no' } };
    expect(readGroups(claims, 'https://example.com/groups')).toEqual(['ops']);
  });

  it('answers undefined when the claim is missing (userinfo fallback) and [] for other shapes', () => {
    expect(readGroups({}, 'groups')).toBeUndefined();
    expect(readGroups({ groups: null }, 'groups')).toBeUndefined();
    expect(readGroups({ groups: { a: 1 } }, 'groups')).toEqual([]);
    expect(readGroups({ groups: '' }, 'groups')).toEqual([]);
  });

  it('does not read inherited properties', () => {
    expect(readClaim({}, 'constructor')).toBeUndefined();
    expect(readClaim({ a: {} }, 'a.toString')).toBeUndefined();
  });
});

describe(readString.name, () => {
  it('reads non-empty strings only', () => {
    expect(readString({ email: 'a@b' }, 'email')).toBe('a@b');
    expect(readString({ email: '' }, 'email')).toBeUndefined();
    expect(readString({ email: 1 }, 'email')).toBeUndefined();
  });
});

describe(isAllowed.name, () => {
  it('allows everyone when allowedGroups is empty, else needs one shared group', () => {
    expect(isAllowed([], [])).toBe(true);
    expect(isAllowed(['a'], ['b', 'a'])).toBe(true);
    expect(isAllowed(['c'], ['b', 'a'])).toBe(false);
    expect(isAllowed([], ['a'])).toBe(false);
  });
});
