import { describe, expect, it } from 'vitest';

import { copyInto } from './shared-copy';

describe('copyInto', () => {
  it('copies into shared memory at every alignment of source and target, the bytes around untouched', () => {
    const src = Buffer.alloc(300);
    for (let i = 0; i < src.length; i++) src[i] = (i * 7 + 3) & 0xff;
    for (const from of [0, 1, 3, 8]) {
      for (const at of [0, 2, 5, 16]) {
        const dst = Buffer.from(new SharedArrayBuffer(400));
        dst.fill(0xee);
        const piece = src.subarray(from, from + 257);
        copyInto(dst, piece, at);
        expect(Buffer.compare(dst.subarray(at, at + 257), piece)).toBe(0);
        expect(dst.subarray(0, at).every((b) => b === 0xee)).toBe(true);
        expect(dst.subarray(at + 257).every((b) => b === 0xee)).toBe(true);
      }
    }
  });

  it('copies out of shared memory into ordinary memory', () => {
    const shared = Buffer.from(new SharedArrayBuffer(64));
    for (let i = 0; i < 64; i++) shared[i] = i;
    const dst = Buffer.alloc(70);
    copyInto(dst, shared.subarray(3, 40), 1);
    expect([...dst.subarray(1, 38)]).toEqual([...shared.subarray(3, 40)]);
    expect(dst[0]).toBe(0);
    expect(dst[38]).toBe(0);
  });

  it('copies nothing for an empty source (where fill would throw)', () => {
    const dst = Buffer.alloc(4, 1);
    copyInto(dst, new Uint8Array(0), 4);
    copyInto(dst, new Uint8Array(0), 0);
    expect([...dst]).toEqual([1, 1, 1, 1]);
  });

  it('refuses a range past the target (as set does), writing nothing', () => {
    const dst = Buffer.alloc(4);
    expect(() => {
      copyInto(dst, Buffer.from([1, 2, 3]), 2);
    }).toThrow(RangeError);
    expect([...dst]).toEqual([0, 0, 0, 0]);
  });
});
