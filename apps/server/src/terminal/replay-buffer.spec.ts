import { describe, expect, it } from 'vitest';

import { ReplayBuffer } from './replay-buffer';

const text = (bufs: Buffer[] | undefined): string | undefined =>
  bufs === undefined ? undefined : Buffer.concat(bufs).toString();

describe(ReplayBuffer.name, () => {
  it('replays from any held offset exactly', () => {
    const b = new ReplayBuffer(100);
    b.push(Buffer.from('hello '));
    b.push(Buffer.from('world'));
    expect(b.end).toBe(11);
    expect(text(b.since(0))).toBe('hello world');
    expect(text(b.since(3))).toBe('lo world');
    expect(text(b.since(6))).toBe('world');
    expect(text(b.since(11))).toBe('');
  });

  it('keeps only the newest capacity bytes and refuses offsets that fell off', () => {
    const b = new ReplayBuffer(8);
    b.push(Buffer.from('0123456789'));
    b.push(Buffer.from('abc'));
    expect(b.start).toBe(5);
    expect(b.end).toBe(13);
    expect(text(b.since(5))).toBe('56789abc');
    expect(b.since(4)).toBeUndefined();
    expect(b.since(14)).toBeUndefined();
    expect(b.since(1.5)).toBeUndefined();
  });

  it('copies the pushed bytes (a reused transport buffer does not change history)', () => {
    const b = new ReplayBuffer(16);
    const src = Buffer.from('abcd');
    b.push(src);
    src.fill(0x7a);
    expect(text(b.since(0))).toBe('abcd');
  });
});
