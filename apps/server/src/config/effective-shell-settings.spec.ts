import { describe, expect, it } from 'vitest';

import type { ClusterEntry, ClusterShellOverrides } from './clusters-file';
import type { ClusterShellSettings } from './server-config';
import {
  effectiveShellSettings,
  podTemplateFields,
  shellForCaller,
  shellModeFor,
  shellSummary,
} from './effective-shell-settings';

const SERVER: ClusterShellSettings = {
  enabled: true,
  mode: 'bash',
  modeByTier: { read: 'kubectl' },
  tiers: ['read', 'admin'],
  namespace: 'periscope-system',
  idleSeconds: 1200,
  podStartTimeoutSeconds: 30,
  transcriptMaxBytes: 1024,
  maxSessionsPerUser: 2,
  maxSessionsTotal: 10,
  image: 'shell:1',
  imagePullPolicy: 'IfNotPresent',
  maxSessionSeconds: 28_800,
  maxSessionWarnSeconds: 300,
  readinessSeconds: 60,
  pod: { labels: { team: 'sre' }, nodeSelector: { pool: 'ops' } },
};

const entry = (clusterShell: ClusterShellOverrides, extra: Partial<ClusterEntry> = {}): ClusterEntry =>
  ({
    name: 'lab',
    backend: 'agent',
    tags: {},
    exec: {},
    protectedNamespaces: [],
    clusterShell,
    ...extra,
  }) as ClusterEntry;

describe(effectiveShellSettings.name, () => {
  it('is the server-wide settings when the cluster overrides nothing', () => {
    const s = effectiveShellSettings(SERVER, entry({}));
    expect(s).toEqual({ ...SERVER, modeByTier: { read: 'kubectl' } });
    expect(s.reason).toBeUndefined();
  });

  it("applies the cluster's overrides and merges its pod template", () => {
    const s = effectiveShellSettings(
      SERVER,
      entry({
        tiers: ['triage'],
        image: 'mirror/shell:1',
        idleSeconds: 300,
        maxSessionsTotal: 2,
        pod: { labels: { env: 'lab' }, tolerations: [{ operator: 'Exists' }] },
      }),
    );
    expect(s).toMatchObject({
      enabled: true,
      tiers: ['triage'],
      image: 'mirror/shell:1',
      idleSeconds: 300,
      maxSessionsTotal: 2,
      namespace: 'periscope-system',
      pod: {
        labels: { team: 'sre', env: 'lab' },
        nodeSelector: { pool: 'ops' },
        tolerations: [{ operator: 'Exists' }],
      },
    });
  });

  it('is off with the reason when the cluster turns it off, and cannot be turned on against the server', () => {
    expect(effectiveShellSettings(SERVER, entry({ enabled: false }))).toMatchObject({
      enabled: false,
      reason: 'the cluster shell is turned off for lab (clusterShell.enabled: false in the clusters file)',
    });
    expect(effectiveShellSettings({ ...SERVER, enabled: false }, entry({ enabled: true }))).toMatchObject({
      enabled: false,
      reason: expect.stringMatching(/disabled on the server \(PERISCOPE_CLUSTER_SHELL_ENABLED\)/) as unknown,
    });
  });

  it('picks the mode per tier: cluster per-tier, then cluster mode, then server per-tier, then server mode', () => {
    const base = effectiveShellSettings(SERVER, entry({}));
    expect(shellModeFor(base, 'read')).toBe('kubectl');
    expect(shellModeFor(base, 'admin')).toBe('bash');
    const perTier = effectiveShellSettings(SERVER, entry({ modeByTier: { admin: 'kubectl' } }));
    expect([shellModeFor(perTier, 'read'), shellModeFor(perTier, 'admin')]).toEqual(['kubectl', 'kubectl']);
    const mode = effectiveShellSettings(SERVER, entry({ mode: 'kubectl', modeByTier: { admin: 'bash' } }));
    expect([shellModeFor(mode, 'read'), shellModeFor(mode, 'triage'), shellModeFor(mode, 'admin')]).toEqual([
      'kubectl',
      'kubectl',
      'bash',
    ]);
    const bashEverywhere = effectiveShellSettings(SERVER, entry({ mode: 'bash' }));
    expect(shellModeFor(bashEverywhere, 'read')).toBe('bash');
  });

  it('carries inClusterServer of a kubeconfig cluster only', () => {
    const kc = entry(
      {},
      { backend: 'kubeconfig', kubeconfigPath: '/k', inClusterServer: 'https://10.0.0.1' },
    );
    expect(effectiveShellSettings(SERVER, kc).inClusterServer).toBe('https://10.0.0.1');
    expect(effectiveShellSettings(SERVER, entry({})).inClusterServer).toBeUndefined();
  });
});

describe(shellForCaller.name, () => {
  const view = (over: ClusterShellOverrides = {}) => {
    const s = effectiveShellSettings(SERVER, entry(over));
    return {
      name: 'lab',
      clusterShellEnabled: s.enabled,
      ...(s.reason !== undefined ? { clusterShellReason: s.reason } : { clusterShellMode: s.mode }),
      clusterShell: shellSummary(s),
    };
  };

  it("shows the caller's tier's mode", () => {
    expect(shellForCaller(view(), 'read')).toMatchObject({
      clusterShellEnabled: true,
      clusterShellMode: 'kubectl',
    });
    expect(shellForCaller(view(), 'admin')).toMatchObject({
      clusterShellEnabled: true,
      clusterShellMode: 'bash',
    });
    expect(view().clusterShell).toEqual({
      tiers: ['read', 'admin'],
      modeByTier: { read: 'kubectl', admin: 'bash' },
      image: 'shell:1',
      idleSeconds: 1200,
      maxSessionsTotal: 10,
    });
  });

  it("refuses a tier the cluster does not allow, with the cluster's tiers", () => {
    const v = shellForCaller(view({ tiers: ['admin'] }), 'read');
    expect(v).toMatchObject({
      clusterShellEnabled: false,
      clusterShellReason: 'your tier (read) may not open a cluster shell here; allowed: admin',
    });
    expect(v).not.toHaveProperty('clusterShellMode');
    expect(shellForCaller(view(), undefined).clusterShellEnabled).toBe(false);
  });

  it('keeps the reason of a cluster that has the shell off', () => {
    expect(shellForCaller(view({ enabled: false }), 'admin')).toMatchObject({
      clusterShellEnabled: false,
      clusterShellReason: expect.stringMatching(/turned off for lab/) as unknown,
    });
  });
});

describe(podTemplateFields.name, () => {
  it('passes labels as the extra labels of the session objects', () => {
    expect(podTemplateFields({ labels: { team: 'sre' }, imagePullSecrets: ['r'] })).toEqual({
      extraLabels: { team: 'sre' },
      imagePullSecrets: ['r'],
    });
    expect(podTemplateFields({})).toEqual({});
  });
});
