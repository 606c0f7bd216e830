import { createHash, randomBytes } from 'node:crypto';

import { afterEach, describe, expect, it } from 'vitest';

import type { EncoderEvent } from './cast-encoder-protocol';
import { CastLineEncoder, ESCAPE_WASM, useEscapeWasm } from './cast-line-encoder';
import { escapeWasmValid, loadEscapeWasm, WASM_TABLES_END } from './escape-wasm';

/** Random text: controls, quotes, backslashes, 2-, 3- and 4-byte characters, printable ASCII. */
function randomText(n: number): string {
  let s = '';
  for (let k = 0; k < n; k++) {
    const r = Math.random();
    if (r < 0.08) s += String.fromCharCode(Math.floor(Math.random() * 0x20));
    else if (r < 0.11) s += '"';
    else if (r < 0.14) s += '\\';
    else if (r < 0.18) s += 'é';
    else if (r < 0.21) s += '漢';
    else if (r < 0.23) s += '𝄞';
    else if (r < 0.24) s += '\u007f';
    else s += String.fromCharCode(0x20 + Math.floor(Math.random() * 95));
  }
  return s;
}

/** Encodes `chunks` as one output event each, one batch each, with the WebAssembly escape or without. */
function encodeWith(escape: 'wasm' | 'js', chunks: Uint8Array[]) {
  useEscapeWasm(escape === 'wasm');
  const enc = new CastLineEncoder(1 << 30);
  const parts: Uint8Array[] = [];
  for (const [i, c] of chunks.entries()) {
    const events: EncoderEvent[] = [{ t: i / 1000, code: 'o', off: 0, len: c.length }];
    parts.push(Buffer.from(enc.encode(c, events)));
  }
  const end = enc.end(chunks.length / 1000);
  parts.push(end.out);
  return { file: Buffer.concat(parts), sha256: end.sha256, bytes: end.bytes };
}

describe('the WebAssembly SIMD escape (escape-wasm.ts)', () => {
  afterEach(() => {
    useEscapeWasm(true);
  });

  it('emits a module that validates, and the encoder uses it on this Node', () => {
    expect(escapeWasmValid()).toBe(true);
    expect(ESCAPE_WASM).toBe(true);
  });

  it('escapes as JSON.stringify does, for every length across the 16-byte steps', () => {
    const w = loadEscapeWasm();
    if (!w) throw new Error('no WebAssembly SIMD on this Node: the encoder would use the JavaScript loop');
    w.memory.grow(8);
    const at = WASM_TABLES_END;
    const out = 256 * 1024;
    for (let n = 0; n < 400; n++)
      for (let rep = 0; rep < 3; rep++) {
        const s = rep === 0 ? 'x'.repeat(n) : randomText(n);
        const src = Buffer.from(s, 'utf8');
        new Uint8Array(w.memory.buffer).set(src, at);
        const end = w.escape(at, at + src.length, out);
        expect(Buffer.from(w.memory.buffer, out, end - out).toString('utf8')).toBe(
          JSON.stringify(s).slice(1, -1),
        );
      }
  });

  it('makes the encoder write the same bytes and SHA-256 as the JavaScript loop, at every split point', () => {
    // valid text (the SIMD path), and random bytes (mostly the checking loop, with valid runs)
    const inputs = [
      Buffer.from(randomText(120), 'utf8'),
      randomBytes(100),
      Buffer.from('a€"\\\n𝄞'.repeat(12)),
    ];
    for (const b of inputs)
      for (let cut = 0; cut <= b.length; cut++) {
        const chunks = [b.subarray(0, cut), b.subarray(cut)];
        const a = encodeWith('wasm', chunks);
        const j = encodeWith('js', chunks);
        expect(a.file.equals(j.file)).toBe(true);
        expect(a.sha256).toBe(j.sha256);
        expect(a.sha256).toBe(createHash('sha256').update(a.file).digest('hex'));
      }
  });

  it('matches the JavaScript loop on long output: pieces of its input, and its output memory grown', () => {
    // 1 MiB of text with many escapes: more than one input piece and 6+ MiB of output (grows)
    const controls = Buffer.alloc(1024 * 1024);
    for (let k = 0; k < controls.length; k++) controls[k] = k % 7 === 0 ? 0x41 : k % 31;
    const text = Buffer.from(randomText(300_000), 'utf8');
    for (const b of [controls, text]) {
      const chunks = [b.subarray(0, 70_001), b.subarray(70_001)];
      const a = encodeWith('wasm', chunks);
      const j = encodeWith('js', chunks);
      expect(a.file.length).toBeGreaterThan(b.length);
      expect(a.file.equals(j.file)).toBe(true);
      expect(a.sha256).toBe(j.sha256);
    }
  });
});
