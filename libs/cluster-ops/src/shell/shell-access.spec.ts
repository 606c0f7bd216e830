import { describe, expect, it } from 'vitest';

import {
  describeAccess,
  rulesAllow,
  shellAccessRequirements,
  summarizeMissing,
  type AccessRule,
} from './shell-access';

/** The provisioner Role and ClusterRoles the charts render (_cluster-shell.tpl, _rbac.tpl impersonator). */
const CHART_RULES: AccessRule[] = [
  { apiGroups: [''], resources: ['pods'], verbs: ['create', 'delete', 'get', 'list', 'watch'] },
  { apiGroups: [''], resources: ['pods/exec'], verbs: ['create', 'get'] },
  { apiGroups: [''], resources: ['secrets'], verbs: ['create', 'delete', 'get', 'list', 'watch', 'update'] },
  { apiGroups: [''], resources: ['serviceaccounts'], verbs: ['create', 'delete', 'get', 'list', 'watch'] },
  { apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'] },
  {
    apiGroups: ['rbac.authorization.k8s.io'],
    resources: ['clusterroles', 'clusterrolebindings'],
    verbs: ['create', 'delete', 'get', 'list', 'watch'],
  },
  { apiGroups: [''], resources: ['users'], verbs: ['impersonate'] },
  {
    apiGroups: [''],
    resources: ['groups'],
    verbs: ['impersonate'],
    resourceNames: ['periscope-tier:read', 'periscope-tier:admin'],
  },
  {
    apiGroups: ['authentication.k8s.io'],
    resources: ['userextras/audit.periscope.io/session-id', 'userextras/audit.periscope.io/actor'],
    verbs: ['impersonate'],
  },
];

describe('shellAccessRequirements', () => {
  it('lists what the provisioner does: namespaced writes, session roles, impersonation per tier', () => {
    const reqs = shellAccessRequirements('shells', ['read', 'admin']);
    const described = reqs.map(describeAccess);
    expect(described).toContain('create pods in namespace shells');
    expect(described).toContain('create pods/exec in namespace shells');
    expect(described).toContain('update secrets in namespace shells');
    expect(described).toContain('create serviceaccounts/token in namespace shells');
    expect(described).toContain('create clusterroles.rbac.authorization.k8s.io');
    expect(described).toContain('impersonate users');
    expect(described).toContain('impersonate userextras/audit.periscope.io/session-id');
    expect(reqs.filter((r) => r.tier !== undefined).map(describeAccess)).toEqual([
      'impersonate groups periscope-tier:read',
      'impersonate groups periscope-tier:admin',
    ]);
  });

  it('is all granted by the rules the charts install', () => {
    for (const r of shellAccessRequirements('shells', ['read', 'admin']))
      expect(rulesAllow(CHART_RULES, r), describeAccess(r)).toBe(true);
  });

  it('finds what the charts do not grant: a tier not listed in their impersonator role', () => {
    const missing = shellAccessRequirements('shells', ['triage']).filter((r) => !rulesAllow(CHART_RULES, r));
    expect(missing.map(describeAccess)).toEqual(['impersonate groups periscope-tier:triage']);
  });
});

describe('rulesAllow (RBAC rule semantics)', () => {
  const pods = { verb: 'create', group: '', resource: 'pods', namespace: 'x' };
  const exec = { ...pods, subresource: 'exec' };

  it('matches verbs, groups and resources exactly or by *', () => {
    expect(rulesAllow([{ verbs: ['create'], apiGroups: [''], resources: ['pods'] }], pods)).toBe(true);
    expect(rulesAllow([{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }], exec)).toBe(true);
    expect(rulesAllow([{ verbs: ['get'], apiGroups: [''], resources: ['pods'] }], pods)).toBe(false);
    expect(rulesAllow([{ verbs: ['create'], apiGroups: ['apps'], resources: ['pods'] }], pods)).toBe(false);
    expect(rulesAllow([{ verbs: ['create'], resources: ['pods'] }], pods)).toBe(false);
  });

  it('keeps subresources apart: pods does not grant pods/exec, */exec does', () => {
    expect(rulesAllow([{ verbs: ['create'], apiGroups: [''], resources: ['pods'] }], exec)).toBe(false);
    expect(rulesAllow([{ verbs: ['create'], apiGroups: [''], resources: ['pods/exec'] }], pods)).toBe(false);
    expect(rulesAllow([{ verbs: ['create'], apiGroups: [''], resources: ['*/exec'] }], exec)).toBe(true);
  });

  it('needs the name when a rule lists resourceNames', () => {
    const rule = { verbs: ['impersonate'], apiGroups: [''], resources: ['groups'], resourceNames: ['a'] };
    const group = { verb: 'impersonate', group: '', resource: 'groups' };
    expect(rulesAllow([rule], { ...group, name: 'a' })).toBe(true);
    expect(rulesAllow([rule], { ...group, name: 'b' })).toBe(false);
    expect(rulesAllow([rule], group)).toBe(false);
  });
});

describe('summarizeMissing', () => {
  it('groups the verbs of one resource and names where', () => {
    const missing = shellAccessRequirements('shells', ['admin']).filter(
      (r) => r.resource === 'pods' || r.resource === 'groups',
    );
    expect(summarizeMissing(missing)).toBe(
      'create, get, watch, delete, list pods in namespace shells; create pods/exec in namespace shells; impersonate groups periscope-tier:admin',
    );
  });
});
