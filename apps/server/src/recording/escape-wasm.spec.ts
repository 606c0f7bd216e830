import { createHash, randomBytes } from 'node:crypto';

import { afterEach, describe, expect, it } from 'vitest';

import type { EncoderEvent } from './cast-encoder-protocol';
import { CastLineEncoder, ESCAPE_WASM, useEscapeWasm } from './cast-line-encoder';
import { ASCII_STOP_AT, escapeWasmValid, loadEscapeWasm, WASM_TABLES_END } from './escape-wasm';

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

/** The module with room for the tests: input at `at`, output at `out`. */
function wasmWithRoom() {
  const w = loadEscapeWasm();
  if (!w) throw new Error('no WebAssembly SIMD on this Node: the encoder would use the JavaScript loop');
  w.memory.grow(8);
  return { w, at: WASM_TABLES_END, out: 256 * 1024 };
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
    const { w, at, out } = wasmWithRoom();
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

  it('escapeAscii escapes plain ASCII as JSON.stringify does and stops before the first byte ≥ 0x80', () => {
    const { w, at, out } = wasmWithRoom();
    // randomText with every character outside ASCII made an `a`
    const ascii = (n: number): string => {
      let out = '';
      for (const ch of randomText(n)) out += (ch.codePointAt(0) as number) < 0x80 ? ch : 'a';
      return out;
    };
    for (let n = 0; n < 200; n++)
      for (const stopAt of [n, Math.floor(Math.random() * (n + 1)), n - 1, 0].filter(
        (k) => k >= 0 && k <= n,
      )) {
        // ASCII with controls, quotes and backslashes; from stopAt on, a non-ASCII byte (é, an
        // invalid 0xff, a continuation byte) and more text the function must not touch
        const head = Buffer.from(ascii(stopAt), 'latin1');
        const tail =
          stopAt < n
            ? Buffer.concat([
                Buffer.from([[0xc3, 0xff, 0x80][n % 3] as number]),
                Buffer.from(ascii(n - stopAt - 1), 'latin1'),
              ])
            : Buffer.alloc(0);
        const src = Buffer.concat([head, tail]);
        new Uint8Array(w.memory.buffer).set(src, at);
        const end = w.escapeAscii(at, at + src.length, out);
        expect(new Int32Array(w.memory.buffer, ASCII_STOP_AT, 1)[0]).toBe(at + head.length);
        expect(Buffer.from(w.memory.buffer, out, end - out).toString('latin1')).toBe(
          JSON.stringify(head.toString('latin1')).slice(1, -1),
        );
      }
  });

  it('makes the encoder write the same bytes and SHA-256 as the JavaScript loop, at every split point', () => {
    // valid text (the SIMD path), and random bytes (mostly the checking loop, with valid runs)
    const inputs = [
      Buffer.from(randomText(120), 'utf8'),
      randomBytes(100),
      Buffer.from('a€"\\\n𝄞'.repeat(12)),
      // long ASCII runs (the escapeAscii path) ending at a character, an invalid byte, a split one
      Buffer.concat([
        Buffer.from(`${'x'.repeat(90)}"\t${'y'.repeat(40)}`),
        Buffer.from('é漢', 'utf8'),
        Buffer.from('z'.repeat(70)),
      ]),
      Buffer.concat([
        Buffer.from('q'.repeat(100)),
        Buffer.from([0xff, 0xe2, 0x82]),
        Buffer.from('w'.repeat(80)),
      ]),
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
    // ASCII across several input pieces, then text with other characters from 200 KiB on
    const late = Buffer.concat([
      Buffer.from('periscope 0123456789\r\n'.repeat(9000)),
      text.subarray(0, 50_000),
    ]);
    for (const b of [controls, text, late]) {
      const chunks = [b.subarray(0, 70_001), b.subarray(70_001)];
      const a = encodeWith('wasm', chunks);
      const j = encodeWith('js', chunks);
      expect(a.file.length).toBeGreaterThan(b.length);
      expect(a.file.equals(j.file)).toBe(true);
      expect(a.sha256).toBe(j.sha256);
    }
  });
});
