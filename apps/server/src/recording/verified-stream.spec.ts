import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

import { describe, expect, it } from 'vitest';

import { verifiedStream, type StreamOutcome } from './recording.service';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const chunks = (n: number): Buffer[] =>
  Array.from({ length: n }, (_, i) => Buffer.alloc(1000, 97 + (i % 26)));

async function drain(r: Readable): Promise<{ got: Buffer; error: Error | undefined }> {
  const parts: Buffer[] = [];
  try {
    for await (const c of r as AsyncIterable<Buffer>) parts.push(c);
    return { got: Buffer.concat(parts), error: undefined };
  } catch (err) {
    return { got: Buffer.concat(parts), error: err as Error };
  }
}

describe('verifiedStream (replay of a large recording, hashed as it streams)', () => {
  it('passes every byte when size and SHA-256 match, and says so once', async () => {
    const data = chunks(20);
    const all = Buffer.concat(data);
    const told: StreamOutcome[] = [];
    const r = verifiedStream(Readable.from(data), { bytes: all.length, sha256: sha(all) }, (o) =>
      told.push(o),
    );
    const { got, error } = await drain(r);
    expect(error).toBeUndefined();
    expect(got.equals(all)).toBe(true);
    expect(told).toEqual([{ ok: true, extra: {} }]);
  });

  it('holds the last chunk back and fails instead when a byte differs', async () => {
    const data = chunks(20);
    const all = Buffer.concat(data);
    const expected = { bytes: all.length, sha256: sha(all) };
    const bad = data.map((c) => Buffer.from(c));
    (bad[7] as Buffer)[3] = 0x21;
    const told: StreamOutcome[] = [];
    const { got, error } = await drain(verifiedStream(Readable.from(bad), expected, (o) => told.push(o)));
    expect(error?.message).toMatch(/integrity check failed: SHA-256/);
    expect(got.length).toBe(all.length - 1000); // never the whole
    expect(told).toEqual([{ ok: false, detail: expect.stringMatching(/^SHA-256 /) }]);
  });

  it('fails on a size that differs', async () => {
    const data = chunks(5);
    const all = Buffer.concat(data);
    const told: StreamOutcome[] = [];
    const { error } = await drain(
      verifiedStream(Readable.from(data.slice(0, 4)), { bytes: all.length, sha256: sha(all) }, (o) =>
        told.push(o),
      ),
    );
    expect(error).toBeDefined();
    expect(told).toEqual([{ ok: false, detail: `size 4000, recorded ${all.length}` }]);
  });

  it('a reader that goes away early is told as incomplete, once', async () => {
    const data = chunks(50);
    const all = Buffer.concat(data);
    const told: StreamOutcome[] = [];
    const r = verifiedStream(Readable.from(data), { bytes: all.length, sha256: sha(all) }, (o) =>
      told.push(o),
    );
    await new Promise<void>((resolve) => {
      r.once('data', () => {
        r.destroy();
        resolve();
      });
    });
    await new Promise((res) => setTimeout(res, 50));
    expect(told).toHaveLength(1);
    expect(told[0]).toMatchObject({ ok: true, extra: { incomplete: expect.stringContaining('went away') } });
  });
});
