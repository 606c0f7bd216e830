import { shellAccessRequirements, type ShellAccessResult } from '@periscope/cluster-ops';
import { describe, expect, it } from 'vitest';

import {
  installHint,
  provisionerSubject,
  readinessFromAccess,
  readinessRefusal,
  recheckDue,
} from './shell-readiness';

const SHELL = { namespace: 'periscope-shell', tiers: ['read', 'admin'] };
const PROD = { name: 'prod', backend: 'kubeconfig' as const };
const all = shellAccessRequirements(SHELL.namespace, SHELL.tiers);
const result = (over: Partial<ShellAccessResult>): ShellAccessResult => ({
  namespaceMissing: false,
  missing: [],
  accessReviews: 0,
  ...over,
});

describe('readinessFromAccess', () => {
  it('is ready when nothing is missing', () => {
    expect(readinessFromAccess(PROD, SHELL, result({}), 1)).toEqual({ state: 'ready', checkedAt: 1 });
  });

  it('names what every session misses, who lacks it, and the install step for that subject', () => {
    const r = readinessFromAccess(
      PROD,
      SHELL,
      result({
        username: 'ops-bot',
        missing: all.filter(
          (m) => (m.resource === 'pods' && m.subresource === undefined) || m.tier === 'admin',
        ),
      }),
      1,
    );
    expect(r.state).toBe('missing');
    const reason = readinessRefusal(r, 'admin') ?? '';
    expect(reason).toMatch(
      /^cluster-shell RBAC missing on prod \(as ops-bot\): cannot create, get, watch, delete, list pods in namespace periscope-shell; impersonate groups periscope-tier:admin; install with helm template periscope-agent-rbac charts\/periscope-agent --set mode=rbac-only --set provisioner.subject.kind=User --set provisioner.subject.name=ops-bot /,
    );
    expect(reason).toContain(
      "--set clusterShell.namespace=periscope-shell --set clusterShell.tiers='{read,admin}'",
    );
    // every tier is refused the same way
    expect(readinessRefusal(r, 'read')).toBe(reason);
  });

  it('refuses only the tier whose group the provisioner may not impersonate', () => {
    const r = readinessFromAccess(PROD, SHELL, result({ missing: all.filter((m) => m.tier === 'admin') }), 1);
    expect(readinessRefusal(r, 'read')).toBeUndefined();
    expect(readinessRefusal(r, 'admin')).toMatch(
      /^cluster-shell RBAC missing on prod for tier admin: cannot impersonate groups periscope-tier:admin; install with /,
    );
  });

  it('says when the shell namespace does not exist', () => {
    const r = readinessFromAccess(PROD, SHELL, result({ namespaceMissing: true }), 1);
    expect(readinessRefusal(r, 'admin')).toMatch(/namespace periscope-shell does not exist; install with/);
  });

  it('points an in-cluster server at its own chart', () => {
    const r = readinessFromAccess(
      { name: 'home', backend: 'in-cluster' },
      SHELL,
      result({ missing: all.slice(0, 1) }),
      1,
    );
    expect(readinessRefusal(r, 'admin')).toMatch(/set clusterShell.enabled=true .* on the periscope chart/);
  });
});

describe('provisionerSubject / installHint', () => {
  it('turns a ServiceAccount username into a ServiceAccount subject', () => {
    expect(provisionerSubject('system:serviceaccount:ops:periscope')).toEqual({
      kind: 'ServiceAccount',
      name: 'periscope',
      namespace: 'ops',
    });
    expect(installHint('eks', 'ns', ['admin'], 'system:serviceaccount:ops:periscope')).toContain(
      '--set provisioner.subject.kind=ServiceAccount --set provisioner.subject.name=periscope --set provisioner.subject.namespace=ops',
    );
  });

  it('uses a User subject otherwise, with a placeholder when the apiserver did not say who', () => {
    expect(provisionerSubject('arn:aws:iam::1:role/periscope')).toEqual({
      kind: 'User',
      name: 'arn:aws:iam::1:role/periscope',
    });
    expect(provisionerSubject(undefined).name).toMatch(/kubeconfig/);
  });
});

describe('readinessRefusal / recheckDue', () => {
  it('never refuses an unknown or ready cluster', () => {
    expect(readinessRefusal(undefined, 'admin')).toBeUndefined();
    expect(readinessRefusal({ state: 'unknown', error: 'ECONNREFUSED' }, 'admin')).toBeUndefined();
    expect(readinessRefusal({ state: 'ready', checkedAt: 0 }, 'admin')).toBeUndefined();
  });

  it('re-checks only refusals older than the floor', () => {
    const missing = { state: 'missing' as const, checkedAt: 1000, reason: 'x', tiers: {} };
    expect(recheckDue(missing, 5999, 5000)).toBe(false);
    expect(recheckDue(missing, 6000, 5000)).toBe(true);
    expect(recheckDue({ state: 'ready', checkedAt: 0 }, 99_999, 5000)).toBe(false);
    expect(recheckDue(undefined, 99_999, 5000)).toBe(false);
  });
});
