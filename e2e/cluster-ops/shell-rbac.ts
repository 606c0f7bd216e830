/**
 * The RBAC a cluster-shell namespace needs, for tests (the Helm charts render the same
 * objects): a provisioner ServiceAccount limited to the namespace, and per tier a shell
 * ServiceAccount whose only right is to impersonate that tier's group and the audit extras.
 */
export function shellNamespaceRbac(ns: string, tiers: string[], tierRoles: Record<string, string>): string {
  const docs: unknown[] = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'provisioner', namespace: ns } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'periscope-shell-provisioner', namespace: ns },
      rules: [
        {
          apiGroups: [''],
          resources: ['pods', 'secrets'],
          verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
        },
        { apiGroups: [''], resources: ['pods/exec'], verbs: ['get', 'create'] },
        { apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'] },
        { apiGroups: [''], resources: ['events'], verbs: ['get', 'list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'periscope-shell-provisioner', namespace: ns },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'periscope-shell-provisioner' },
      subjects: [{ kind: 'ServiceAccount', name: 'provisioner', namespace: ns }],
    },
    // Like the charts: the provisioner may read the cluster CA from kube-public/cluster-info.
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: `${ns}-cluster-info`, namespace: 'kube-public' },
      rules: [
        { apiGroups: [''], resources: ['configmaps'], resourceNames: ['cluster-info'], verbs: ['get'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: `${ns}-cluster-info`, namespace: 'kube-public' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: `${ns}-cluster-info` },
      subjects: [{ kind: 'ServiceAccount', name: 'provisioner', namespace: ns }],
    },
  ];
  for (const tier of tiers) {
    docs.push(
      {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: `periscope-shell-${tier}`, namespace: ns },
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: `${ns}-impersonator-${tier}` },
        rules: [
          { apiGroups: [''], resources: ['users'], verbs: ['impersonate'] },
          {
            apiGroups: [''],
            resources: ['groups'],
            verbs: ['impersonate'],
            resourceNames: [`periscope-tier:${tier}`],
          },
          {
            apiGroups: ['authentication.k8s.io'],
            resources: ['userextras/audit.periscope.io/session-id', 'userextras/audit.periscope.io/actor'],
            verbs: ['impersonate'],
          },
        ],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: `${ns}-impersonator-${tier}` },
        roleRef: {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: 'ClusterRole',
          name: `${ns}-impersonator-${tier}`,
        },
        subjects: [{ kind: 'ServiceAccount', name: `periscope-shell-${tier}`, namespace: ns }],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: `${ns}-tier-${tier}` },
        roleRef: {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: 'ClusterRole',
          name: tierRoles[tier] ?? 'view',
        },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: `periscope-tier:${tier}` }],
      },
    );
  }
  return docs.map((d) => JSON.stringify(d)).join('\n');
}
