import { describe, expect, it } from 'vitest';

import { isRequestId, newRid } from './ids';

describe(newRid.name, () => {
  it('makes UUIDv7 strings that sort by time', () => {
    const a = newRid(1_700_000_000_000);
    const b = newRid(1_700_000_000_001);
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a < b).toBe(true);
    expect(new Set(Array.from({ length: 1000 }, () => newRid())).size).toBe(1000);
  });
});

describe(isRequestId.name, () => {
  it('accepts request ids and refuses anything that is not a safe header value', () => {
    expect(isRequestId(newRid())).toBe(true);
    expect(isRequestId('rid-00000001')).toBe(true);
    expect(isRequestId('a'.repeat(64))).toBe(true);
    for (const bad of [
      'short',
      'a'.repeat(65),
      'rid-0001\r\nX-Evil: 1',
      'rid 00000001',
      'rid-00000001\n',
      'rid_0000000é',
      '',
      42,
      undefined,
    ])
      expect(isRequestId(bad)).toBe(false);
  });
});
