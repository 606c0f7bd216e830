import { createHash, randomBytes } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import type { EncoderEvent } from './cast-encoder-protocol';
import { parseCast } from './asciicast';
import { CastLineEncoder, MARKER_ROOM, REUSE_MIN_BYTES, reuseOutput } from './cast-line-encoder';

/** Encodes `chunks` as one output event each (batches of `perBatch`); answers the file and summary. */
function encode(chunks: Uint8Array[], perBatch = 1, maxBytes = 1 << 30) {
  const enc = new CastLineEncoder(maxBytes);
  const parts: Uint8Array[] = [];
  for (let i = 0; i < chunks.length; i += perBatch) {
    const group = chunks.slice(i, i + perBatch);
    const raw = Buffer.concat(group);
    const events: EncoderEvent[] = [];
    let off = 0;
    for (const [k, c] of group.entries()) {
      events.push({ t: (i + k) / 1000, code: 'o', off, len: c.length });
      off += c.length;
    }
    parts.push(enc.encode(raw, events));
  }
  const end = enc.end(chunks.length / 1000);
  parts.push(end.out);
  const file = Buffer.concat(parts);
  return { file, summary: end };
}

/** The output text the cast carries, joined. */
function outputText(file: Buffer): string {
  const cast = parseCast(`{}\n${file.toString('utf8')}`);
  expect(cast.bad).toBe(0);
  return cast.events.map((e) => e.data).join('');
}

/** Splits bytes at the given offsets. */
function split(b: Uint8Array, at: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const a of [...at, b.length]) {
    out.push(b.subarray(prev, a));
    prev = a;
  }
  return out;
}

describe('CastLineEncoder (asciicast lines straight from the bytes)', () => {
  it('writes the same lines JSON.stringify does, for every ASCII byte and text', () => {
    const all = Uint8Array.from({ length: 128 }, (_, i) => i);
    const text = Buffer.from('héllo "wörld" \\ tab\there\r\n\u001b[31m€ 𝄞 漢字\u007f');
    for (const b of [all, text]) {
      const { file } = encode([b]);
      const expected = `${JSON.stringify([0, 'o', new TextDecoder().decode(b)])}\n`;
      expect(file.toString('utf8')).toBe(expected);
    }
  });

  it('writes a character split across chunks whole, at every split point, in one batch or several', () => {
    const text = Buffer.from('a€b𝄞c漢d\u00e9');
    for (let cut = 1; cut < text.length; cut++)
      for (const perBatch of [1, 2]) {
        const { file } = encode(split(text, [cut]), perBatch);
        expect(outputText(file)).toBe(text.toString('utf8'));
        expect(file.toString('utf8')).not.toContain('\ufffd');
      }
    // one byte per chunk: every character waits for its last byte
    const { file } = encode(
      split(
        text,
        Array.from({ length: text.length - 1 }, (_, i) => i + 1),
      ),
    );
    expect(outputText(file)).toBe('a€b𝄞c漢d\u00e9');
  });

  it('replaces invalid bytes with U+FFFD as TextDecoder does (maximal subparts), split or not', () => {
    const cases = [
      [0x80], // stray continuation
      [0xc0, 0xaf], // overlong
      [0xe0, 0x80, 0xaf], // overlong 3-byte
      [0xed, 0xa0, 0x80], // a UTF-16 surrogate
      [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
      [0xf5, 0xff, 0xfe],
      [0xe2, 0x82], // truncated, then ASCII
      [0xe2, 0x82, 0x41],
      [0xf0, 0x9f, 0x98], // truncated at the very end
      [0x41, 0xe2, 0x28, 0xa1, 0x42],
      [0xc3, 0xc3, 0xa9],
    ];
    for (const c of cases) {
      const bytes = Uint8Array.from(c);
      const expected = new TextDecoder().decode(bytes);
      expect(outputText(encode([bytes]).file)).toBe(expected);
      for (let cut = 1; cut < bytes.length; cut++)
        expect(outputText(encode(split(bytes, [cut])).file), `${c.join(',')} cut at ${cut}`).toBe(expected);
    }
  });

  it('matches TextDecoder on random bytes cut at random points; size and SHA-256 are those of the file', () => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let round = 0; round < 50; round++) {
      // mostly UTF-8 text with random bytes mixed in
      const text = Buffer.from('ab€𝄞\r\n"\\\u0001漢é'.repeat(20));
      const noise = randomBytes(64);
      const bytes = Buffer.concat([text.subarray(0, rand(text.length)), noise, text]);
      const cuts = [...new Set(Array.from({ length: 8 }, () => rand(bytes.length)))].sort((a, b) => a - b);
      const { file, summary } = encode(split(bytes, cuts), 1 + rand(3));
      expect(outputText(file)).toBe(new TextDecoder().decode(bytes));
      expect(summary.bytes).toBe(file.length);
      expect(summary.sha256).toBe(createHash('sha256').update(file).digest('hex'));
    }
  });

  it('long valid output (checked natively, then escaped) matches TextDecoder at every cut, and falls back on an invalid byte', () => {
    const text = Buffer.from('журнал "записи" \\ сеанса — ä € 漢字 𝄞 \u001b[31mred\u001b[0m\r\n'.repeat(6));
    for (let cut = 1; cut < 200; cut++)
      for (const perBatch of [1, 2]) {
        const { file } = encode(split(text, [cut, cut + 97]), perBatch);
        expect(outputText(file), `cut at ${cut}`).toBe(text.toString('utf8'));
        expect(file.toString('utf8')).not.toContain('\ufffd');
      }
    // the same JSON as JSON.stringify writes
    expect(encode([text]).file.toString('utf8')).toBe(`${JSON.stringify([0, 'o', text.toString('utf8')])}\n`);
    // an invalid byte anywhere in a long chunk: the whole chunk as TextDecoder reads it
    for (const at of [0, 1, 63, 64, 100, text.length - 2, text.length - 1]) {
      const bad = Buffer.from(text);
      bad[at] = 0xff;
      expect(outputText(encode([bad]).file), `0xff at ${at}`).toBe(new TextDecoder().decode(bad));
      expect(outputText(encode(split(bad, [at + 1])).file)).toBe(new TextDecoder().decode(bad));
    }
  });

  it('fills a given-back chunk buffer again; the chunk is exactly its bytes', () => {
    const enc = new CastLineEncoder(1 << 30);
    const big = Buffer.from('x'.repeat(100 * 1024));
    const first = enc.encode(big, [{ t: 0, code: 'o', off: 0, len: big.length }]);
    expect(first.byteLength).toBeGreaterThanOrEqual(REUSE_MIN_BYTES);
    const memory = first.buffer;
    reuseOutput(memory);
    // a shorter chunk in the same memory: only its own bytes, none of the previous ones
    const text = Buffer.from('y"\\'.repeat(16 * 1024));
    const second = enc.encode(text, [{ t: 1, code: 'o', off: 0, len: text.length }]);
    expect(second.buffer).toBe(memory);
    expect(Buffer.from(second).toString('utf8')).toBe(`${JSON.stringify([1, 'o', text.toString('utf8')])}\n`);
    // not given back: new memory
    const third = enc.encode(big, [{ t: 2, code: 'o', off: 0, len: big.length }]);
    expect(third.buffer).not.toBe(memory);
  });

  it('stops at the size cap with a truncated marker and writes nothing after it', () => {
    const chunks = Array.from({ length: 100 }, () => Buffer.from('x'.repeat(100)));
    const { file, summary } = encode(chunks, 3, 2048);
    expect(file.length).toBeLessThanOrEqual(2048);
    expect(summary).toMatchObject({ truncated: true, bytes: file.length });
    const lines = file.toString('utf8').trimEnd().split('\n');
    expect(JSON.parse(lines.at(-1) ?? '')).toEqual([expect.any(Number), 'm', 'truncated']);
    expect(file.length).toBeGreaterThan(2048 - MARKER_ROOM - 200);
  });

  it('writes text events (input, resize, marker) and the header as they are', () => {
    const enc = new CastLineEncoder(1 << 20);
    const out = enc.encode(Buffer.from('hi'), [
      { t: 0, code: 'H', data: '{"version":2}\n' },
      { t: 0.5, code: 'r', data: '100x30' },
      { t: 1.25, code: 'o', off: 0, len: 2 },
      { t: 2, code: 'i', data: 'ls "x"\r' },
    ]);
    expect(Buffer.from(out).toString('utf8')).toBe(
      '{"version":2}\n[0.5,"r","100x30"]\n[1.25,"o","hi"]\n[2,"i","ls \\"x\\"\\r"]\n',
    );
  });
});
