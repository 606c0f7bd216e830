import { describe, expect, it } from 'vitest';

import { duration, shellSettingsLine } from './shell-settings';

describe(shellSettingsLine.name, () => {
  it('groups tiers by mode and says the idle cut, cap and image', () => {
    expect(
      shellSettingsLine({
        tiers: ['read', 'triage', 'admin'],
        modeByTier: { read: 'kubectl', triage: 'kubectl', admin: 'bash' },
        image: 'ghcr.io/x/shell:1',
        idleSeconds: 1200,
        maxSessionsTotal: 10,
      }),
    ).toBe(
      'kubectl for read, triage; bash for admin · idle cut after 20 min · at most 10 at once · image ghcr.io/x/shell:1',
    );
  });

  it('writes durations as people read them', () => {
    expect([duration(45), duration(90), duration(1200), duration(3600), duration(5400)]).toEqual([
      '45 s',
      '90 s',
      '20 min',
      '1 h',
      '1 h 30 min',
    ]);
  });
});
