import { describe, expect, it } from 'vitest';

import { parseEnv, PROTECTION_ENV } from './env-spec';

describe('PROTECTION_ENV', () => {
  it('defaults to no protected namespaces and no tier binder', () => {
    expect(parseEnv(PROTECTION_ENV, {})).toEqual({
      values: { PERISCOPE_PROTECTED_NAMESPACES: [], PERISCOPE_TIER_BINDINGS: false },
      problems: [],
    });
  });

  it('takes namespace names and refuses other values or more than 64', () => {
    expect(
      parseEnv(PROTECTION_ENV, { PERISCOPE_PROTECTED_NAMESPACES: 'periscope, kube-system' }).values
        .PERISCOPE_PROTECTED_NAMESPACES,
    ).toEqual(['periscope', 'kube-system']);
    expect(parseEnv(PROTECTION_ENV, { PERISCOPE_PROTECTED_NAMESPACES: 'ok,Not_OK' }).problems).toEqual([
      expect.objectContaining({ setting: 'PERISCOPE_PROTECTED_NAMESPACES' }),
    ]);
    const many = Array.from({ length: 65 }, (_, i) => `n${i}`).join(',');
    expect(parseEnv(PROTECTION_ENV, { PERISCOPE_PROTECTED_NAMESPACES: many }).problems).toEqual([
      expect.objectContaining({ setting: 'PERISCOPE_PROTECTED_NAMESPACES', allowed: 'at most 64 entries' }),
    ]);
  });
});
