import { describe, expect, it } from 'vitest';

import { readmit } from './readmit';

describe(readmit.name, () => {
  it('keeps any session whose tier did not change', () => {
    expect(readmit({ kind: 'cluster_shell', tier: 'admin' }, 'admin')).toBeUndefined();
    expect(readmit({ kind: 'pod_exec', tier: 'read' }, 'read')).toBeUndefined();
    expect(readmit({ kind: 'pod_exec', tier: null }, undefined)).toBeUndefined();
  });

  it('ends a cluster shell on any tier change (its identity is the tier), up or down', () => {
    for (const next of ['maintain', undefined] as const)
      expect(readmit({ kind: 'cluster_shell', tier: 'admin' }, next)).toMatchObject({
        code: 'E_TIER_CHANGED',
        retryable: false,
      });
    expect(readmit({ kind: 'cluster_shell', tier: 'maintain' }, 'admin')?.message).toMatch(
      /from maintain to admin.*runs as tier maintain/,
    );
  });

  it('keeps a pod exec when the tier rose and ends it when the tier fell or went away', () => {
    expect(readmit({ kind: 'pod_exec', tier: 'read' }, 'admin')).toBeUndefined();
    expect(readmit({ kind: 'pod_exec', tier: 'admin' }, 'read')?.code).toBe('E_TIER_CHANGED');
    expect(readmit({ kind: 'pod_exec', tier: 'read' }, undefined)?.message).toMatch(/from read to none/);
  });
});
