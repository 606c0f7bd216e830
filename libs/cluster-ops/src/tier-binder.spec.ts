import { describe, expect, it } from 'vitest';

import { planTierBindings, TIER_EDIT_BINDINGS, tierRoleBinding } from './tier-binder';

const [write, maintain] = TIER_EDIT_BINDINGS;
const ns = (name: string, terminating = false): { name: string; terminating: boolean } => ({
  name,
  terminating,
});
const PROTECTED = new Set(['periscope-system', 'kube-system']);

describe(tierRoleBinding.name, () => {
  it('binds exactly one tier group to ClusterRole edit, labelled as the binder’s', () => {
    expect(tierRoleBinding('shop', write)).toEqual({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: {
        name: 'periscope-tier-write',
        namespace: 'shop',
        labels: {
          'periscope.io/purpose': 'tier-rbac',
          'periscope.io/tier': 'write',
          'app.kubernetes.io/managed-by': 'periscope-tier-binder',
        },
      },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'periscope-tier:write' }],
    });
    expect(tierRoleBinding('shop', maintain).subjects).toEqual([
      { apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'periscope-tier:maintain' },
    ]);
  });
});

describe(planTierBindings.name, () => {
  it('creates both bindings in every ordinary namespace, none in protected or terminating ones', () => {
    const plan = planTierBindings(
      [ns('shop'), ns('periscope-system'), ns('kube-system'), ns('leaving', true)],
      [],
      PROTECTED,
    );
    expect(plan.create.map((c) => `${c.namespace}/${c.binding.name}`)).toEqual([
      'shop/periscope-tier-write',
      'shop/periscope-tier-maintain-edit',
    ]);
    expect(plan.delete).toEqual([]);
  });

  it('keeps what is in place, deletes its bindings in protected namespaces, re-creates altered ones', () => {
    const widened = {
      ...tierRoleBinding('shop', maintain),
      subjects: [
        { apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'periscope-tier:maintain' },
        { apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'mallory' },
      ],
    };
    const plan = planTierBindings(
      [ns('shop'), ns('periscope-system')],
      [tierRoleBinding('shop', write), widened, tierRoleBinding('periscope-system', write)],
      PROTECTED,
    );
    expect(plan.delete).toEqual([
      { namespace: 'shop', name: 'periscope-tier-maintain-edit', reason: 'altered' },
      { namespace: 'periscope-system', name: 'periscope-tier-write', reason: 'protected' },
    ]);
    expect(plan.create.map((c) => `${c.namespace}/${c.binding.name}`)).toEqual([
      'shop/periscope-tier-maintain-edit',
    ]);
  });

  it('never touches a binding that is not one of its names, whatever its label says', () => {
    const foreign = {
      ...tierRoleBinding('periscope-system', write),
      metadata: { name: 'admins', namespace: 'periscope-system' },
    };
    const toAdmin = { ...tierRoleBinding('shop', write), roleRef: { kind: 'ClusterRole', name: 'admin' } };
    const plan = planTierBindings([ns('shop')], [foreign, toAdmin], PROTECTED);
    expect(plan.delete).toEqual([{ namespace: 'shop', name: 'periscope-tier-write', reason: 'altered' }]);
  });
});
