/**
 * The RBAC a cluster-shell namespace needs, for tests (the Helm charts render the same objects,
 * through charts/periscope-common/templates/_cluster-shell.tpl and _shell-identity-policy.tpl):
 * a provisioner ServiceAccount that writes pods, secrets and ServiceAccounts in the namespace,
 * may impersonate operators in the given tiers (as the charts' agent and in-cluster server may),
 * and creates the per-session ClusterRole and ClusterRoleBinding that the admission policy below
 * narrows to one operator, one tier group and one session; plus each tier's group bound to its
 * ClusterRole.
 */
export function shellNamespaceRbac(ns: string, tiers: string[], tierRoles: Record<string, string>): string {
  const provisioner = { kind: 'ServiceAccount', name: 'provisioner', namespace: ns };
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
        {
          apiGroups: [''],
          resources: ['serviceaccounts'],
          verbs: ['create', 'delete', 'get', 'list', 'watch'],
        },
        { apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'] },
        { apiGroups: [''], resources: ['events'], verbs: ['get', 'list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'periscope-shell-provisioner', namespace: ns },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'periscope-shell-provisioner' },
      subjects: [provisioner],
    },
    // The per-session ClusterRole and ClusterRoleBinding (the policy below narrows them).
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: `${ns}-shell-identities` },
      rules: [
        {
          apiGroups: ['rbac.authorization.k8s.io'],
          resources: ['clusterroles', 'clusterrolebindings'],
          verbs: ['create', 'delete', 'get', 'list', 'watch'],
        },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: `${ns}-shell-identities` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `${ns}-shell-identities` },
      subjects: [provisioner],
    },
    // Like the charts' impersonator: Kubernetes lets the provisioner create a session's role only
    // because it holds these rights itself.
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: `${ns}-impersonator` },
      rules: [
        { apiGroups: [''], resources: ['users'], verbs: ['impersonate'] },
        {
          apiGroups: [''],
          resources: ['groups'],
          verbs: ['impersonate'],
          resourceNames: tiers.map((t) => `periscope-tier:${t}`),
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
      metadata: { name: `${ns}-impersonator` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `${ns}-impersonator` },
      subjects: [provisioner],
    },
    ...shellIdentityPolicy(`${ns}-shell-identities`, `system:serviceaccount:${ns}:provisioner`, ns),
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
      subjects: [provisioner],
    },
  ];
  for (const tier of tiers) {
    docs.push({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: `${ns}-tier-${tier}` },
      roleRef: {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'ClusterRole',
        name: tierRoles[tier] ?? 'view',
      },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: `periscope-tier:${tier}` }],
    });
  }
  return docs.map((d) => JSON.stringify(d)).join('\n');
}

const SESSION_NAME = '^periscope-shell-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

/**
 * The admission policy (and its binding) that narrows what the provisioner may write with its
 * ServiceAccount and RBAC rights: only objects named `periscope-shell-<session id>` and labelled
 * as that session's; a ClusterRole may only impersonate one user (never `system:`), one
 * `periscope-tier:` group and that session's two audit extras; a ClusterRoleBinding may only bind
 * the role of its own name to the ServiceAccount of its own name in the shell namespace; tokens
 * only for those ServiceAccounts. The charts render the same spec (chart-render.spec.ts compares).
 */
export function shellIdentityPolicy(name: string, provisionerUser: string, shellNs: string): unknown[] {
  return [
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name },
      spec: shellIdentityPolicySpec(provisionerUser, shellNs),
    },
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name },
      spec: { policyName: name, validationActions: ['Deny'] },
    },
  ];
}

export function shellIdentityPolicySpec(provisionerUser: string, shellNs: string): Record<string, unknown> {
  const label = (key: string, value: string): string =>
    `('${key}' in variables.labels && variables.labels['${key}'] == ${value})`;
  return {
    failurePolicy: 'Fail',
    matchConstraints: {
      resourceRules: [
        {
          apiGroups: ['rbac.authorization.k8s.io'],
          apiVersions: ['*'],
          operations: ['CREATE', 'UPDATE', 'DELETE'],
          resources: ['clusterroles', 'clusterrolebindings'],
        },
        {
          apiGroups: [''],
          apiVersions: ['*'],
          operations: ['CREATE', 'UPDATE', 'DELETE'],
          resources: ['serviceaccounts', 'serviceaccounts/token'],
        },
      ],
    },
    matchConditions: [
      { name: 'provisioner', expression: `request.userInfo.username == '${provisionerUser}'` },
    ],
    variables: [
      {
        name: 'kind',
        expression:
          "request.resource.resource + (has(request.subResource) && request.subResource != '' ? '/' + request.subResource : '')",
      },
      {
        name: 'labels',
        expression: "(request.operation == 'DELETE' ? oldObject : object).metadata.?labels.orValue({})",
      },
      {
        name: 'sessionId',
        expression: "request.name.startsWith('periscope-shell-') ? request.name.substring(16) : ''",
      },
    ],
    validations: [
      {
        expression: `request.name.matches('${SESSION_NAME}')`,
        messageExpression:
          "'the shell provisioner may only write ' + variables.kind + ' named periscope-shell-<session id>, not \"' + request.name + '\"'",
        reason: 'Forbidden',
      },
      {
        expression: [
          "variables.kind == 'serviceaccounts/token' || (",
          label('periscope.io/cluster-shell', "'true'"),
          `&& ${label('periscope.io/session-id', 'variables.sessionId')}`,
          `&& (variables.kind == 'serviceaccounts' || ${label('periscope.io/shell-namespace', `'${shellNs}'`)}))`,
        ].join(' '),
        message: `The shell provisioner may only write objects labelled periscope.io/cluster-shell=true and periscope.io/session-id=<the session id in the name>, and cluster-scoped ones also periscope.io/shell-namespace=${shellNs}.`,
        reason: 'Forbidden',
      },
      {
        expression: [
          "variables.kind != 'clusterroles' || request.operation == 'DELETE' || (",
          '!has(object.aggregationRule) && size(object.?rules.orValue([])) <= 4 && object.?rules.orValue([]).all(r,',
          "r.verbs == ['impersonate']",
          '&& size(r.?nonResourceURLs.orValue([])) == 0',
          '&& size(r.?apiGroups.orValue([])) == 1 && size(r.?resources.orValue([])) == 1',
          '&& size(r.?resourceNames.orValue([])) == 1 && (',
          "(r.apiGroups[0] == '' && r.resources[0] == 'users' && !r.resourceNames[0].startsWith('system:'))",
          "|| (r.apiGroups[0] == '' && r.resources[0] == 'groups' && r.resourceNames[0].startsWith('periscope-tier:'))",
          "|| (r.apiGroups[0] == 'authentication.k8s.io' && r.resources[0] == 'userextras/audit.periscope.io/session-id' && r.resourceNames[0] == variables.sessionId)",
          "|| (r.apiGroups[0] == 'authentication.k8s.io' && r.resources[0] == 'userextras/audit.periscope.io/actor'))))",
        ].join(' '),
        message:
          'A shell ClusterRole may only impersonate one user (not system:), one periscope-tier: group, its own session id and one actor: verb impersonate, exactly one resource and one resourceName per rule, no aggregation.',
        reason: 'Forbidden',
      },
      {
        expression: [
          "variables.kind != 'clusterroles' || request.operation == 'DELETE'",
          "|| ['users', 'groups', 'userextras/audit.periscope.io/session-id', 'userextras/audit.periscope.io/actor']",
          '.all(res, size(object.?rules.orValue([]).filter(r, r.resources[0] == res)) <= 1)',
        ].join(' '),
        message:
          'A shell ClusterRole may hold at most one rule for each of users, groups and the two audit extras.',
        reason: 'Forbidden',
      },
      {
        expression: [
          "variables.kind != 'clusterrolebindings' || request.operation == 'DELETE' || (",
          "object.roleRef.apiGroup == 'rbac.authorization.k8s.io' && object.roleRef.kind == 'ClusterRole'",
          '&& object.roleRef.name == request.name && size(object.?subjects.orValue([])) == 1',
          "&& object.subjects[0].kind == 'ServiceAccount' && object.subjects[0].name == request.name",
          `&& object.subjects[0].?namespace.orValue('') == '${shellNs}')`,
        ].join(' '),
        message: `A shell ClusterRoleBinding may only bind the ClusterRole of its own name to the ServiceAccount of its own name in ${shellNs}.`,
        reason: 'Forbidden',
      },
    ],
  };
}
