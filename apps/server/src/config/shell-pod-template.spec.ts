import { describe, expect, it } from 'vitest';

import { parseClustersFile } from './clusters-file';
import { mergePodTemplate, parsePodTemplateEnv, quantityValue } from './shell-pod-template';

const file = (clusterShell: string): string =>
  `clusters:\n  - name: lab\n    backend: kubeconfig\n    kubeconfigPath: /k\n    clusterShell:\n${clusterShell
    .split('\n')
    .map((l) => `      ${l}`)
    .join('\n')}\n`;

function problemsOf(clusterShell: string): { setting: string; value?: string; allowed: string }[] {
  const r = parseClustersFile(file(clusterShell), 'c.yaml');
  expect(r.clusters).toEqual([]);
  return r.problems;
}

describe('clusters[i].clusterShell', () => {
  it('keeps every override, the pod template as plain data', () => {
    const { clusters, problems } = parseClustersFile(
      file(
        [
          'enabled: true',
          'tiers: [read, admin, read]',
          'mode: bash',
          'modeByTier: { read: kubectl }',
          'image: registry.example/shell:1',
          'idleSeconds: 300',
          'maxSessionsTotal: 3',
          'pod:',
          '  resources: { requests: { cpu: 100m, memory: 128Mi }, limits: { cpu: 2, memory: 1Gi } }',
          '  nodeSelector: { kubernetes.io/os: linux }',
          '  tolerations:',
          '    - { key: dedicated, operator: Equal, value: ops, effect: NoSchedule }',
          '    - { operator: Exists, effect: NoExecute, tolerationSeconds: 60 }',
          '  priorityClassName: ops-high',
          '  labels: { team: sre, example.com/cost-centre: "42" }',
          '  annotations: { example.com/owner: "SRE <sre@example.com>" }',
          '  imagePullSecrets: [regcred, regcred, mirror]',
        ].join('\n'),
      ),
      'c.yaml',
    );
    expect(problems).toEqual([]);
    expect(clusters[0]?.clusterShell).toEqual({
      enabled: true,
      tiers: ['read', 'admin'],
      mode: 'bash',
      modeByTier: { read: 'kubectl' },
      image: 'registry.example/shell:1',
      idleSeconds: 300,
      maxSessionsTotal: 3,
      pod: {
        resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '2', memory: '1Gi' } },
        nodeSelector: { 'kubernetes.io/os': 'linux' },
        tolerations: [
          { key: 'dedicated', operator: 'Equal', value: 'ops', effect: 'NoSchedule' },
          { operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 60 },
        ],
        priorityClassName: 'ops-high',
        labels: { team: 'sre', 'example.com/cost-centre': '42' },
        annotations: { 'example.com/owner': 'SRE <sre@example.com>' },
        imagePullSecrets: ['regcred', 'mirror'],
      },
    });
  });

  it.each([
    ['enabled: "no"', 'clusterShell.enabled', /true or false/],
    ['tiers: []', 'clusterShell.tiers', /non-empty list of tiers \(read, triage/],
    ['tiers: [owner]', 'clusterShell.tiers', /non-empty list of tiers/],
    ['mode: zsh', 'clusterShell.mode', /one of bash, kubectl/],
    ['modeByTier: { read: zsh }', 'clusterShell.modeByTier', /mapping of tier .* to mode \(bash, kubectl\)/],
    ['modeByTier: { owner: bash }', 'clusterShell.modeByTier', /mapping of tier/],
    ['image: "a b"', 'clusterShell.image', /image reference without spaces/],
    ['idleSeconds: 5', 'clusterShell.idleSeconds', /whole number from 60 to 86400/],
    ['maxSessionsTotal: 0', 'clusterShell.maxSessionsTotal', /whole number from 1 to 10000/],
    ['shell: bash', 'clusterShell.shell', /^one of the keys enabled, tiers, mode, modeByTier/],
    [
      'pod: { resources: { requests: { cpu: lots } } }',
      'clusterShell.pod.resources.requests',
      /quantities such as 250m/,
    ],
    [
      'pod: { resources: { requests: { gpu: "1" } } }',
      'clusterShell.pod.resources.requests',
      /cpu, memory, ephemeral-storage/,
    ],
    [
      'pod: { resources: { requests: { memory: 1Gi }, limits: { memory: 512Mi } } }',
      'clusterShell.pod.resources.limits',
      /limits at least as large as the requests/,
    ],
    ['pod: { nodeSelector: { "bad key!": x } }', 'clusterShell.pod.nodeSelector', /mapping of label keys/],
    [
      'pod: { tolerations: [{ effect: NoSchedule }] }',
      'clusterShell.pod.tolerations',
      /name a key, or have operator: Exists/,
    ],
    [
      'pod: { tolerations: [{ key: a, operator: Exists, value: b }] }',
      'clusterShell.pod.tolerations[0].value',
      /no value with operator Exists/,
    ],
    [
      'pod: { tolerations: [{ key: a, effect: Sometimes }] }',
      'clusterShell.pod.tolerations[0].effect',
      /NoSchedule, PreferNoSchedule, NoExecute/,
    ],
    [
      'pod: { tolerations: [{ key: a, tolerationSeconds: 5 }] }',
      'clusterShell.pod.tolerations[0].tolerationSeconds',
      /only with effect NoExecute/,
    ],
    ['pod: { priorityClassName: High_Prio }', 'clusterShell.pod.priorityClassName', /PriorityClass name/],
    [
      'pod: { imagePullSecrets: regcred }',
      'clusterShell.pod.imagePullSecrets',
      /list of at most 16 Secret names/,
    ],
    [
      'pod: { hostNetwork: true }',
      'clusterShell.pod.hostNetwork',
      /^one of the keys resources, nodeSelector/,
    ],
  ])('refuses %s, naming the field', (yaml, path, allowed) => {
    expect(problemsOf(yaml)).toEqual([
      expect.objectContaining({
        setting: `c.yaml: clusters[0].${path}`,
        allowed: expect.stringMatching(allowed) as unknown,
      }),
    ]);
  });

  it.each([
    [
      'labels',
      'periscope.io/tier',
      /keys other than "periscope.io\/tier": labels under periscope.io\/ and app.kubernetes.io\/name are Periscope's own/,
    ],
    ['labels', 'app.kubernetes.io/name', /keys other than "app.kubernetes.io\/name"/],
    ['labels', 'audit.periscope.io/x', /keys other than "audit.periscope.io\/x"/],
    ['annotations', 'periscope.io/session-id', /annotations under periscope.io\/ are Periscope's own/],
    ['annotations', 'container.apparmor.security.beta.kubernetes.io/shell', /Pod Security "restricted"/],
    ['annotations', 'seccomp.security.alpha.kubernetes.io/pod', /Pod Security "restricted"/],
  ])("refuses Periscope's own or security-weakening %s key %s", (field, key, allowed) => {
    expect(problemsOf(`pod: { ${field}: { "${key}": x } }`)).toEqual([
      expect.objectContaining({
        setting: `c.yaml: clusters[0].clusterShell.pod.${field}`,
        allowed: expect.stringMatching(allowed) as unknown,
      }),
    ]);
  });

  it('takes inClusterServer on kubeconfig clusters only, as an https URL', () => {
    const ok = parseClustersFile(
      'clusters:\n  - { name: a, backend: kubeconfig, kubeconfigPath: /k, inClusterServer: "https://kubernetes.default.svc:443/" }\n',
      'c.yaml',
    );
    expect(ok.problems).toEqual([]);
    expect(ok.clusters[0]).toMatchObject({ inClusterServer: 'https://kubernetes.default.svc:443' });
    const http = parseClustersFile(
      'clusters:\n  - { name: a, backend: kubeconfig, kubeconfigPath: /k, inClusterServer: "http://10.0.0.1" }\n',
      'c.yaml',
    );
    expect(http.problems).toEqual([
      expect.objectContaining({
        setting: 'c.yaml: clusters[0].inClusterServer',
        allowed: expect.stringMatching(/^an https:\/\/ URL of the apiserver/) as unknown,
      }),
    ]);
    const agent = parseClustersFile(
      'clusters:\n  - { name: a, backend: agent, inClusterServer: "https://10.0.0.1" }\n',
      'c.yaml',
    );
    expect(agent.problems).toEqual([
      expect.objectContaining({
        setting: 'c.yaml: clusters[0].inClusterServer',
        allowed: expect.stringMatching(/only with backend kubeconfig/) as unknown,
      }),
    ]);
  });
});

describe('server-wide pod template variables', () => {
  it('parses JSON and lists', () => {
    const r = parsePodTemplateEnv({
      resources: '{"requests":{"cpu":"100m"},"limits":{"cpu":"1"}}',
      nodeSelector: '{"pool":"ops"}',
      tolerations: '[{"key":"dedicated","operator":"Exists"}]',
      priorityClassName: 'ops',
      labels: '{"team":"sre"}',
      annotations: '{"example.com/note":"a, b"}',
      imagePullSecrets: ['regcred'],
    });
    expect(r.problems).toEqual([]);
    expect(r.template).toEqual({
      resources: { requests: { cpu: '100m' }, limits: { cpu: '1' } },
      nodeSelector: { pool: 'ops' },
      tolerations: [{ key: 'dedicated', operator: 'Exists' }],
      priorityClassName: 'ops',
      labels: { team: 'sre' },
      annotations: { 'example.com/note': 'a, b' },
      imagePullSecrets: ['regcred'],
    });
    expect(parsePodTemplateEnv({ imagePullSecrets: [] })).toEqual({ template: {}, problems: [] });
  });

  it('names the variable and the field inside it', () => {
    const r = parsePodTemplateEnv({
      resources: '{"limits":{"cpu":"lots"}}',
      tolerations: '[{"key":"a","effect":"Never"}]',
      labels: '{"periscope.io/tier":"admin"}',
      annotations: '{not json',
    });
    expect(r.template).toEqual({});
    expect(r.problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          setting: 'PERISCOPE_CLUSTER_SHELL_POD_ANNOTATIONS',
          allowed: expect.stringMatching(/^JSON \(/) as unknown,
        }),
        expect.objectContaining({
          setting: 'PERISCOPE_CLUSTER_SHELL_POD_RESOURCES (limits)',
          allowed: expect.stringMatching(/quantities/) as unknown,
        }),
        expect.objectContaining({
          setting: 'PERISCOPE_CLUSTER_SHELL_POD_TOLERATIONS ([0].effect)',
          allowed: expect.stringMatching(/NoSchedule/) as unknown,
        }),
        expect.objectContaining({
          setting: 'PERISCOPE_CLUSTER_SHELL_POD_LABELS',
          allowed: expect.stringMatching(/periscope.io\/tier/) as unknown,
        }),
      ]),
    );
    expect(r.problems).toHaveLength(4);
  });
});

describe('pod template helpers', () => {
  it('reads quantities', () => {
    expect(quantityValue('250m')).toBe(0.25);
    expect(quantityValue('1Gi')).toBe(2 ** 30);
    expect(quantityValue('1G')).toBe(1e9);
    expect(quantityValue('1.5')).toBe(1.5);
    expect(quantityValue('-1')).toBeUndefined();
    expect(quantityValue(2)).toBe(2);
    expect(quantityValue(-2)).toBeUndefined();
    expect(quantityValue('1 Gi')).toBeUndefined();
  });

  it("merges a cluster's template over the server's: fields replaced, labels and annotations by key", () => {
    expect(
      mergePodTemplate(
        {
          nodeSelector: { pool: 'a' },
          tolerations: [{ key: 'x', operator: 'Exists' }],
          labels: { team: 'sre', env: 'prod' },
          annotations: { a: '1' },
          priorityClassName: 'low',
        },
        { tolerations: [{ key: 'y', operator: 'Exists' }], labels: { env: 'lab' }, annotations: { b: '2' } },
      ),
    ).toEqual({
      nodeSelector: { pool: 'a' },
      tolerations: [{ key: 'y', operator: 'Exists' }],
      labels: { team: 'sre', env: 'lab' },
      annotations: { a: '1', b: '2' },
      priorityClassName: 'low',
    });
    expect(mergePodTemplate({}, {})).toEqual({});
  });
});
