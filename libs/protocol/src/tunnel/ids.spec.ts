import { describe, expect, it } from 'vitest';

import { newRid } from './ids';

describe(newRid.name, () => {
  it('makes UUIDv7 strings that sort by time', () => {
    const a = newRid(1_700_000_000_000);
    const b = newRid(1_700_000_000_001);
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a < b).toBe(true);
    expect(new Set(Array.from({ length: 1000 }, () => newRid())).size).toBe(1000);
  });
});
