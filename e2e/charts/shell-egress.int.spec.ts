import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { shellLabels } from '@periscope/cluster-ops';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { TestClusterClient } from '../k8s/cluster';
import { AGENT_REQUIRED } from './cases';
import { CHARTS_DIR, helmBinary, one, parseManifests, render, type ChartName, type K8sObject } from './helm';

/**
 * The shell pods' default egress policy against the real apiserver: the chart looks the
 * apiserver's addresses up at install time (helm's server-side dry run, as `helm install` does),
 * refuses to install when it cannot, and what it renders is a NetworkPolicy the apiserver accepts.
 * The local control plane has no CNI, so nothing here shows packets being dropped; that part is
 * the CNI's (docs/cluster-shell.md says so).
 */
const cluster = new TestClusterClient(inject('cluster'));
const id = Date.now().toString(36);
const shellNs = `egress-${id}`;
/** Stands in for what the apiserver's endpoint reconciler writes (the local plane runs without it). */
const SLICE = `kubernetes-egress-${id}`;

interface NetworkPolicy extends K8sObject {
  spec: {
    podSelector: { matchLabels: Record<string, string> };
    policyTypes: string[];
    ingress?: unknown[];
    egress: { to?: { ipBlock?: { cidr: string } }[]; ports?: { port: number; protocol: string }[] }[];
  };
}

/** `helm template` that may ask the cluster (`--dry-run=server`), as `helm install` renders. */
function templateAgainstCluster(
  chart: ChartName,
  values: unknown,
): { ok: boolean; stdout: string; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-egress-'));
  try {
    const file = join(dir, 'values.json');
    writeFileSync(file, JSON.stringify(values));
    const r = spawnSync(
      helmBinary(),
      [
        'template',
        chart,
        join(CHARTS_DIR, chart),
        '--namespace',
        'periscope-system',
        '--dry-run=server',
        '--kubeconfig',
        cluster.info.adminKubeconfig,
        '--values',
        file,
      ],
      { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 },
    );
    return { ok: r.status === 0, stdout: r.stdout, stderr: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `helm install --dry-run=server`: renders everything, NOTES included, against the cluster. */
function installDryRun(chart: ChartName, values: unknown): { ok: boolean; stdout: string; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-egress-'));
  try {
    const file = join(dir, 'values.json');
    writeFileSync(file, JSON.stringify(values));
    const r = spawnSync(
      helmBinary(),
      [
        'install',
        `${chart}-notes`,
        join(CHARTS_DIR, chart),
        '--namespace',
        'periscope-system',
        '--dry-run=server',
        '--kubeconfig',
        cluster.info.adminKubeconfig,
        '--values',
        file,
      ],
      { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 },
    );
    return { ok: r.status === 0, stdout: r.stdout, stderr: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const agentValues = (networkPolicy: Record<string, unknown> = {}): Record<string, unknown> => ({
  agent: AGENT_REQUIRED,
  clusterShell: { enabled: true, namespace: shellNs, createNamespace: false, networkPolicy },
});

const policyOf = (manifests: string): NetworkPolicy =>
  one(parseManifests(manifests), 'NetworkPolicy', 'periscope-agent-shell-egress') as NetworkPolicy;

const apiRule = (p: NetworkPolicy): NetworkPolicy['spec']['egress'][number] => p.spec.egress[1]!;

async function applyDryRun(o: K8sObject): Promise<void> {
  const r = await cluster.kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', '-'], {
    input: JSON.stringify(o),
  });
  expect(r.stderr, 'server-side dry run').toBe('');
  expect(r.code).toBe(0);
}

describe('the shell egress policy against the local apiserver', () => {
  beforeAll(async () => {
    await cluster.createNamespace(shellNs);
    const slices = await cluster.kubectlOk([
      'get',
      'endpointslices',
      '-n',
      'default',
      '-l',
      'kubernetes.io/service-name=kubernetes',
      '-o',
      'name',
    ]);
    // The local plane runs the apiserver with --endpoint-reconciler-type=none: nothing to look up yet.
    expect(slices.trim()).toBe('');
  });

  afterAll(async () => {
    await cluster.kubectl(['delete', 'endpointslice', '-n', 'default', SLICE, '--ignore-not-found']);
    await cluster.kubectl(['delete', 'namespace', shellNs, '--wait=false', '--ignore-not-found']);
  });

  it('refuses to install when the apiserver addresses cannot be looked up, and says what to set', () => {
    const r = templateAgainstCluster('periscope-agent', agentValues());
    expect(r.ok).toBe(false);
    expect(r.stderr).toContain(
      "clusterShell.networkPolicy: the apiserver's addresses could not be looked up",
    );
    expect(r.stderr).toContain('Set clusterShell.networkPolicy.apiserver.cidrs');
  });

  it('looks the apiserver up from default/kubernetes at install and the apiserver accepts the policy', async () => {
    await cluster.apply(
      JSON.stringify({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: {
          name: SLICE,
          namespace: 'default',
          labels: { 'kubernetes.io/service-name': 'kubernetes' },
        },
        addressType: 'IPv4',
        endpoints: [{ addresses: ['10.0.0.10'] }, { addresses: ['10.0.0.11'] }],
        ports: [{ name: 'https', port: 6443, protocol: 'TCP' }],
      }),
    );
    const serviceIp = (
      await cluster.kubectlOk([
        'get',
        'service',
        'kubernetes',
        '-n',
        'default',
        '-o',
        'jsonpath={.spec.clusterIP}',
      ])
    ).trim();
    expect(serviceIp).toMatch(/^\d+\.\d+\.\d+\.\d+$/);

    const r = templateAgainstCluster('periscope-agent', agentValues({ apiserver: { ports: [] } }));
    expect(r.stderr.split('\n').filter((l) => l !== '' && !/symbolic link/.test(l))).toEqual([]);
    expect(r.ok).toBe(true);
    const policy = policyOf(r.stdout);
    expect(policy.metadata.namespace).toBe(shellNs);
    expect(policy.metadata.annotations?.['periscope.io/apiserver-addresses']).toContain(
      'looked up at install',
    );
    expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(policy.spec.ingress).toBeUndefined();
    expect(policy.spec.egress).toHaveLength(2);
    expect(
      apiRule(policy)
        .to?.map((t) => t.ipBlock?.cidr)
        .sort(),
    ).toEqual(['10.0.0.10/32', '10.0.0.11/32', `${serviceIp}/32`].sort());
    // The endpoint port (after kube-proxy's rewrite) and the Service port.
    expect(apiRule(policy).ports).toEqual([
      { port: 443, protocol: 'TCP' },
      { port: 6443, protocol: 'TCP' },
    ]);
    await applyDryRun(policy);

    // What helm install prints: the policy and where its addresses came from.
    const install = installDryRun('periscope-agent', agentValues());
    expect(install.ok, install.stderr).toBe(true);
    expect(install.stdout).toContain('Session pods may reach DNS and the apiserver only (NetworkPolicy');
    expect(install.stdout).toContain('The apiserver addresses were looked up at install');
  });

  it('says in the server NOTES who must be allowed to sign in, and where shell egress goes', () => {
    const bare = installDryRun('periscope', {});
    expect(bare.ok, bare.stderr).toBe(true);
    expect(bare.stdout).toContain('ACTION REQUIRED: auth.oidc.issuer and auth.oidc.clientID are empty');
    expect(bare.stdout).toContain(
      'Also say who may sign in: list IdP groups under auth.authorization.allowedGroups',
    );
    const shell = installDryRun('periscope', {
      auth: { authorization: { mode: 'tier', groupTiers: { ops: 'read' } } },
      clusterShell: { enabled: true, tiers: ['read'], namespace: shellNs, createNamespace: false },
    });
    expect(shell.ok, shell.stderr).toBe(true);
    expect(shell.stdout).not.toContain('Also say who may sign in');
    expect(shell.stdout).toContain(`NetworkPolicy periscope-notes-shell-egress in\n${shellNs}`);
  });

  it('uses the given CIDRs instead of looking up, keeps extra rules, and the apiserver accepts it', async () => {
    const objects = parseManifests(
      render(
        'periscope',
        {
          auth: {
            oidc: { issuer: 'https://login.example.com', clientID: 'periscope' },
            authorization: { mode: 'tier', groupTiers: { ops: 'read' } },
          },
          clusterShell: {
            enabled: true,
            tiers: ['read'],
            namespace: shellNs,
            createNamespace: false,
            networkPolicy: {
              apiserver: { cidrs: ['192.168.10.0/28', 'fd00:10::1/128'] },
              extraEgress: [
                { to: [{ ipBlock: { cidr: '10.20.0.0/16' } }], ports: [{ port: 3128, protocol: 'TCP' }] },
              ],
            },
          },
        },
        { namespace: 'periscope-system' },
      ),
    );
    const policy = one(objects, 'NetworkPolicy', 'periscope-shell-egress') as NetworkPolicy;
    expect(policy.metadata.annotations).toBeUndefined();
    expect(apiRule(policy).to).toEqual([
      { ipBlock: { cidr: '192.168.10.0/28' } },
      { ipBlock: { cidr: 'fd00:10::1/128' } },
    ]);
    expect(policy.spec.egress[2]).toEqual({
      to: [{ ipBlock: { cidr: '10.20.0.0/16' } }],
      ports: [{ port: 3128, protocol: 'TCP' }],
    });
    await applyDryRun(policy);
  });

  it("selects every session pod the provisioner labels, and none of Periscope's own pods", () => {
    const policy = policyOf(
      render('periscope-agent', agentValues({ apiserver: { cidrs: ['10.0.0.10/32'] } }), {
        namespace: 'periscope-system',
      }),
    );
    const selector = policy.spec.podSelector.matchLabels;
    const matches = (labels: Record<string, string>): boolean =>
      Object.entries(selector).every(([k, v]) => labels[k] === v);
    for (const tier of ['read', 'admin'])
      for (const extra of [{}, { team: 'sre', 'app.kubernetes.io/name': 'not-a-shell' }] as Record<
        string,
        string
      >[])
        expect(matches(shellLabels('0190f0f0-aaaa-7bbb-8ccc-000000000001', tier, extra))).toBe(true);
    const agent = one(
      parseManifests(render('periscope-agent', { agent: AGENT_REQUIRED })),
      'Deployment',
    ) as unknown as {
      spec: { template: { metadata: { labels: Record<string, string> } } };
    };
    expect(matches(agent.spec.template.metadata.labels)).toBe(false);
  });

  it('renders nothing when turned off', () => {
    const objects = parseManifests(render('periscope-agent', agentValues({ enabled: false })));
    expect(objects.filter((o) => o.kind === 'NetworkPolicy')).toEqual([]);
  });
});
