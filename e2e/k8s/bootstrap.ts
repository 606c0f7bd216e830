import { stringify } from 'yaml';

/**
 * What kubeadm and the controller-manager would create and our lean control plane does not:
 * `kube-public/cluster-info` exactly as kubeadm writes it (key `kubeconfig`, the cluster only,
 * under the empty name) with the Role/RoleBinding that lets anonymous users read it.
 */
export function clusterInfoManifests(server: string, caPem: string): string {
  const kubeconfig = stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: '', cluster: { 'certificate-authority-data': Buffer.from(caPem).toString('base64'), server } },
    ],
    contexts: null,
    'current-context': '',
    preferences: {},
    users: null,
  });
  const docs = [
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'cluster-info', namespace: 'kube-public' },
      data: { kubeconfig },
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'kubeadm:bootstrap-signer-clusterinfo', namespace: 'kube-public' },
      rules: [
        { apiGroups: [''], resources: ['configmaps'], resourceNames: ['cluster-info'], verbs: ['get'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'kubeadm:bootstrap-signer-clusterinfo', namespace: 'kube-public' },
      roleRef: {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'Role',
        name: 'kubeadm:bootstrap-signer-clusterinfo',
      },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'system:anonymous' }],
    },
  ];
  return docs.map((d) => stringify(d)).join('---\n');
}

/** Records every request at Metadata level (user, impersonated user with extras, Audit-ID). */
export const AUDIT_POLICY = stringify({
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  omitStages: ['RequestReceived'],
  rules: [
    {
      level: 'None',
      nonResourceURLs: [
        '/readyz*',
        '/livez*',
        '/healthz*',
        '/version',
        '/openapi/*',
        '/api',
        '/apis',
        '/apis/*',
      ],
    },
    { level: 'None', resources: [{ group: 'coordination.k8s.io', resources: ['leases'] }] },
    { level: 'None', users: ['system:apiserver'] },
    { level: 'Metadata' },
  ],
});
