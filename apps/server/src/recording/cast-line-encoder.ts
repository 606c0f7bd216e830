import { isUtf8 } from 'node:buffer';
import { createHash, type Hash } from 'node:crypto';

import type { EncoderEvent, EncodedSummary } from './cast-encoder-protocol';
import { ASCII_STOP_AT, loadEscapeWasm, WASM_TABLES_END } from './escape-wasm';
import { copyInto } from './shared-copy';

/** Room kept under the size cap for the `truncated` marker line. */
export const MARKER_ROOM = 128;

/**
 * Per byte: 0 copied as it is (printable ASCII but `"` and `\`), 1 an ASCII byte JSON escapes,
 * 2 not ASCII (a UTF-8 lead or continuation byte, or invalid).
 */
const CLASS = new Uint8Array(256);
/** The letter of a two-character JSON escape (`\n`, `\"`…), 0 when it is `\u00XX`. */
const SHORT = new Uint8Array(256);
for (let c = 0; c < 0x20; c++) CLASS[c] = 1;
CLASS[0x22] = 1;
CLASS[0x5c] = 1;
for (let c = 0x80; c < 0x100; c++) CLASS[c] = 2;
SHORT[0x08] = 0x62; // b
SHORT[0x09] = 0x74; // t
SHORT[0x0a] = 0x6e; // n
SHORT[0x0c] = 0x66; // f
SHORT[0x0d] = 0x72; // r
SHORT[0x22] = 0x22;
SHORT[0x5c] = 0x5c;
const HEX = Buffer.from('0123456789abcdef', 'latin1');
/** Words are read in the platform's byte order and written back in it. */
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;
/** Output shorter than this goes through the checking loop alone (the native check costs a call). */
const VALID_MIN = 64;

/** Encoded chunks at least this large are given back once written and filled again. */
export const REUSE_MIN_BYTES = 64 * 1024;
/** Their buffers, given back (at most REUSE_KEEP kept): bulk output allocates no new memory. */
const REUSE_KEEP = 4;
const given: ArrayBuffer[] = [];

/** Takes back an encoded chunk's buffer (transferred back after the write) to fill again. */
export function reuseOutput(buf: ArrayBuffer): void {
  if (given.length < REUSE_KEEP && buf.byteLength >= REUSE_MIN_BYTES) given.push(buf);
}

/** Memory for an encoded chunk of n bytes: a given-back buffer that fits (not twice too big), or new. */
function outputBuffer(n: number): ArrayBuffer {
  if (n >= REUSE_MIN_BYTES)
    for (let k = given.length - 1; k >= 0; k--) {
      const b = given[k] as ArrayBuffer;
      if (b.byteLength >= n && b.byteLength <= 2 * n) {
        given.splice(k, 1);
        return b;
      }
    }
  // not zero-filled (every byte used is copied over); bulk sizes rounded up to 64 KiB to fit again
  const size = n >= REUSE_MIN_BYTES ? Math.ceil(n / REUSE_MIN_BYTES) * REUSE_MIN_BYTES : n;
  return Buffer.allocUnsafeSlow(size).buffer;
}

/**
 * The escape of valid UTF-8 in WebAssembly SIMD (escape-wasm.ts), where there is WebAssembly:
 * input is copied into its memory in pieces of WASM_IN bytes at WASM_IN_AT, and the output buffer
 * (scratch) is its memory from WASM_OUT_AT on, so the escaped bytes are hashed and copied out from
 * there. Without it, the JavaScript loop in valid() does the same.
 */
const wasm = loadEscapeWasm();
const WASM_IN_AT = WASM_TABLES_END;
const WASM_IN = 64 * 1024;
const WASM_OUT_AT = WASM_IN_AT + WASM_IN;
const SCRATCH_BYTES = 2 * 1024 * 1024;
const PAGE = 64 * 1024;
if (wasm)
  wasm.memory.grow(Math.ceil((WASM_OUT_AT + SCRATCH_BYTES) / PAGE) - wasm.memory.buffer.byteLength / PAGE);
let wasmIn = wasm ? Buffer.from(wasm.memory.buffer, WASM_IN_AT, WASM_IN) : undefined;

/** A growable output buffer, reused across batches (the thread encodes one batch at a time). */
let scratch = wasm
  ? Buffer.from(wasm.memory.buffer, WASM_OUT_AT, wasm.memory.buffer.byteLength - WASM_OUT_AT)
  : Buffer.allocUnsafe(SCRATCH_BYTES);
let scratchView = new DataView(scratch.buffer, scratch.byteOffset, scratch.length);
function room(o: number, n: number): Buffer {
  if (o + n > scratch.length) {
    const size = Math.max(o + n, scratch.length * 2);
    if (wasm) {
      // grown in place (its bytes kept); the views of the old memory are gone
      wasm.memory.grow(Math.ceil((WASM_OUT_AT + size) / PAGE) - wasm.memory.buffer.byteLength / PAGE);
      wasmIn = Buffer.from(wasm.memory.buffer, WASM_IN_AT, WASM_IN);
      scratch = Buffer.from(wasm.memory.buffer, WASM_OUT_AT, wasm.memory.buffer.byteLength - WASM_OUT_AT);
    } else {
      const next = Buffer.allocUnsafe(size);
      scratch.copy(next, 0, 0, o);
      scratch = next;
    }
    scratchView = new DataView(scratch.buffer, scratch.byteOffset, scratch.length);
  }
  return scratch;
}

/** Whether the WebAssembly escape is there (it is used unless the tests turn it off). */
export const ESCAPE_WASM = wasm !== undefined;
let useWasm = true;
/** Tests: escape with the JavaScript loop (false) or the WebAssembly one where it is there (true). */
export function useEscapeWasm(on: boolean): void {
  useWasm = on;
}

function timeText(t: number): string {
  // as JSON.stringify writes it: seconds with microsecond resolution, never negative
  return String(Math.max(0, Math.round(t * 1e6) / 1e6));
}

/**
 * Encodes one recording as asciicast v2 lines straight from the output bytes: no intermediate
 * string. Output bytes are validated as UTF-8 the way the WHATWG decoder (TextDecoder) does it:
 * each maximal invalid subsequence becomes one U+FFFD, and a character split across chunks is
 * carried over and written whole with the chunk that completes it (up to 3 bytes wait). Keeps the
 * byte count, the size cap (a `truncated` marker, then nothing) and the SHA-256 of the file.
 */
export class CastLineEncoder {
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;
  private truncated = false;
  /** an incomplete UTF-8 sequence from the previous output: its bytes, how many more it needs, the next byte's range */
  private readonly seen = new Uint8Array(4);
  private seenLen = 0;
  private need = 0;
  private lo = 0x80;
  private hi = 0xbf;

  constructor(private readonly maxBytes: number) {}

  /**
   * Encodes a batch; answers the bytes to append to the file: a buffer the caller owns, or with
   * `copy` false a view of the encoder's memory, valid until its next call (to write at once).
   * `prefix` (with `copy` false): bytes already encoded and hashed, not yet written (a direct
   * write's unaligned tail), put first in the answer, not hashed or counted again.
   */
  encode(
    raw: Uint8Array,
    events: readonly EncoderEvent[],
    copy = true,
    prefix?: Uint8Array,
  ): Uint8Array<ArrayBuffer> {
    const from = this.putPrefix(prefix);
    let o = from;
    for (const ev of events) {
      if (this.truncated) break;
      const start = o;
      if (ev.code === 'o') {
        o = this.prefix(o, ev.t, 'o');
        const body = o;
        o = this.utf8(raw, ev.off, ev.off + ev.len, o);
        if (o === body) {
          o = start; // all of it waits for the rest of a character
          continue;
        }
        o = this.suffix(o);
      } else o = this.text(o, ev.code === 'H' ? ev.data : line(ev.t, ev.code, ev.data));
      o = this.cap(start, o, ev.t);
    }
    return this.take(from, o, copy);
  }

  /** Ends the recording: a character left incomplete becomes U+FFFD (`copy`, `prefix` as for encode). */
  end(t: number, copy = true, prefix?: Uint8Array): { out: Uint8Array<ArrayBuffer> } & EncodedSummary {
    const from = this.putPrefix(prefix);
    let o = from;
    if (this.seenLen > 0 && !this.truncated) {
      this.resetSeq();
      o = this.prefix(from, t, 'o');
      o = replacement(room(o, 3), o);
      o = this.cap(from, this.suffix(o), t);
    }
    const out = this.take(from, o, copy);
    return { out, bytes: this.bytes, sha256: this.hash.digest('hex'), truncated: this.truncated };
  }

  /** Applies the size cap to the line at start..o; answers the new end. */
  private cap(start: number, o: number, t: number): number {
    if (this.bytes + (o - start) <= this.maxBytes - MARKER_ROOM) {
      this.bytes += o - start;
      return o;
    }
    this.truncated = true;
    const end = this.text(start, line(t, 'm', 'truncated'));
    this.bytes += end - start;
    return end;
  }

  /** Copies prefix to the start of the output memory; answers where the new bytes begin. */
  private putPrefix(prefix: Uint8Array | undefined): number {
    if (!prefix || prefix.length === 0) return 0;
    room(0, prefix.length).set(prefix, 0);
    return prefix.length;
  }

  private take(from: number, o: number, copy: boolean): Uint8Array<ArrayBuffer> {
    this.hash.update(scratch.subarray(from, o));
    const view = scratch.subarray(0, o);
    if (!copy) return view;
    // its own memory (transferred to the session's thread; its first o bytes are the chunk)
    const out = new Uint8Array(outputBuffer(o), 0, o);
    out.set(view);
    return out;
  }

  private prefix(o: number, t: number, code: string): number {
    const head = `[${timeText(t)},"${code}","`;
    return o + room(o, head.length).write(head, o, 'latin1');
  }

  private suffix(o: number): number {
    const b = room(o, 3);
    b[o] = 0x22; // "
    b[o + 1] = 0x5d; // ]
    b[o + 2] = 0x0a; // \n
    return o + 3;
  }

  private text(o: number, s: string): number {
    const n = Buffer.byteLength(s, 'utf8');
    return o + room(o, n).write(s, o, n, 'utf8');
  }

  private resetSeq(): void {
    this.seenLen = 0;
    this.need = 0;
    this.lo = 0x80;
    this.hi = 0xbf;
  }

  /**
   * Writes src[i..end) as the inside of a JSON string at o; answers the new end. Most output is
   * valid UTF-8: that is checked natively (node:buffer isUtf8, SIMD) and then only escaped; what is
   * not valid (and a carried-over or split character) goes through the checking loop.
   */
  private utf8(src: Uint8Array, i: number, end: number, o: number): number {
    if (this.need > 0) {
      // the rest of a character carried over from the previous output
      const k = Math.min(end, i + this.need);
      o = this.checked(src, i, k, o);
      i = k;
    }
    if (this.need === 0 && end - i >= VALID_MIN && useWasm && wasm) {
      // plain ASCII up to the first byte ≥ 0x80 needs no UTF-8 check: escaped at once
      [i, o] = this.ascii(src, i, end, o);
      if (i === end) return o;
    }
    if (this.need === 0 && end - i >= VALID_MIN) {
      const cut = completeEnd(src, i, end);
      if (isUtf8(src.subarray(i, cut))) {
        o = this.valid(src, i, cut, o);
        i = cut;
      }
    }
    return i < end ? this.checked(src, i, end, o) : o;
  }

  /**
   * Escapes src[i..end) at o up to its first byte ≥ 0x80 (WebAssembly); answers where it stopped
   * in src (end when all of it was ASCII) and the new end of the output.
   */
  private ascii(src: Uint8Array, i: number, end: number, o: number): [number, number] {
    const w = wasm as NonNullable<typeof wasm>;
    room(o, (end - i) * 6 + 16);
    const input = wasmIn as Buffer;
    const stop = new Int32Array(w.memory.buffer, ASCII_STOP_AT, 1);
    while (i < end) {
      const n = Math.min(end - i, WASM_IN);
      // (src is the batch's slot of shared memory: a plain copy, see shared-copy.ts)
      copyInto(input, src.subarray(i, i + n), 0);
      o = w.escapeAscii(WASM_IN_AT, WASM_IN_AT + n, WASM_OUT_AT + o) - WASM_OUT_AT;
      const done = (stop[0] as number) - WASM_IN_AT;
      i += done;
      if (done < n) break;
    }
    return [i, o];
  }

  /** Escapes src[i..end), known to be valid UTF-8 (whole characters), at o; answers the new end. */
  private valid(src: Uint8Array, i: number, end: number, o: number): number {
    const dst = room(o, (end - i) * 6 + 16);
    if (useWasm && wasm && wasmIn) {
      const input = wasmIn;
      while (i < end) {
        // (a piece may end inside a character: bytes ≥ 0x80 are copied as they are)
        const n = Math.min(end - i, WASM_IN);
        copyInto(input, src.subarray(i, i + n), 0);
        o = wasm.escape(WASM_IN_AT, WASM_IN_AT + n, WASM_OUT_AT + o) - WASM_OUT_AT;
        i += n;
      }
      return o;
    }
    const out = scratchView;
    const base = src.byteOffset;
    const words = new Uint32Array(src.buffer, 0, src.buffer.byteLength >>> 2);
    while (i < end) {
      // whole words while none of their bytes is < 0x20, " or \ (bytes ≥ 0x80 are copied as they are)
      if (((base + i) & 3) === 0)
        while (i + 4 <= end) {
          const w = words[(base + i) >>> 2] as number;
          const q = w ^ 0x22222222;
          const b = w ^ 0x5c5c5c5c;
          // high bits: < 0x20 (may also flag a byte above one that is), a zero in q or b
          if (
            ((((w - 0x20202020) & ~w) | ((q - 0x01010101) & ~q) | ((b - 0x01010101) & ~b)) & 0x80808080) !==
            0
          )
            break;
          out.setUint32(o, w, LITTLE_ENDIAN);
          o += 4;
          i += 4;
        }
      if (i === end) return o;
      const c = src[i] as number;
      i++;
      if (CLASS[c] !== 1) {
        dst[o++] = c;
        continue;
      }
      o = escapeByte(dst, o, c);
    }
    return o;
  }

  /** As utf8(), every byte checked as the WHATWG decoder does, carrying a split character over. */
  private checked(src: Uint8Array, i: number, end: number, o: number): number {
    // at most 6 bytes out per byte in (`\u00XX`), plus a replaced carried-over sequence
    const dst = room(o, (end - i) * 6 + 8);
    const out = scratchView;
    // The words of the source's buffer, to test and copy 4 bytes at a time.
    const base = src.byteOffset;
    const words = new Uint32Array(src.buffer, 0, src.buffer.byteLength >>> 2);
    while (i < end) {
      if (this.need > 0) {
        const c = src[i] as number;
        if (c < this.lo || c > this.hi) {
          // not a continuation: the sequence so far is one U+FFFD, and c is looked at afresh
          this.resetSeq();
          o = replacement(dst, o);
          continue;
        }
        this.lo = 0x80;
        this.hi = 0xbf;
        this.seen[this.seenLen++] = c;
        i++;
        if (--this.need === 0) {
          for (let k = 0; k < this.seenLen; k++) dst[o++] = this.seen[k] as number;
          this.seenLen = 0;
        }
        continue;
      }
      // the hot loop: plain ASCII is copied, whole words while none of their bytes needs a look
      if (((base + i) & 3) === 0)
        while (i + 4 <= end) {
          const w = words[(base + i) >>> 2] as number;
          const q = w ^ 0x22222222; // a byte 0 where there is a "
          const b = w ^ 0x5c5c5c5c; // a byte 0 where there is a \
          // high bits: ≥ 0x80, < 0x20 (may also flag a byte above one that is), a zero in q or b
          if (
            ((w | ((w - 0x20202020) & ~w) | ((q - 0x01010101) & ~q) | ((b - 0x01010101) & ~b)) &
              0x80808080) !==
            0
          )
            break;
          out.setUint32(o, w, LITTLE_ENDIAN);
          o += 4;
          i += 4;
        }
      if (i === end) return o;
      const c = src[i] as number;
      const k = CLASS[c] as number;
      i++;
      if (k === 0) {
        dst[o++] = c;
        continue;
      }
      if (k === 1) {
        o = escapeByte(dst, o, c);
        continue;
      }
      // a lead byte: how many continuation bytes follow, and the range of the first one
      let need: number;
      let lo = 0x80;
      let hi = 0xbf;
      if (c >= 0xc2 && c <= 0xdf) need = 1;
      else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        if (c === 0xe0) lo = 0xa0;
        else if (c === 0xed) hi = 0x9f; // no UTF-16 surrogates
      } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        if (c === 0xf0) lo = 0x90;
        else if (c === 0xf4) hi = 0x8f; // nothing above U+10FFFF
      } else {
        o = replacement(dst, o); // a stray continuation byte, or never valid (C0, C1, F5–FF)
        continue;
      }
      if (i + need <= end) {
        // the whole sequence is here: checked and copied at once; on a bad byte, what came
        // before it is one U+FFFD and the bad byte is looked at afresh
        const c1 = src[i] as number;
        if (c1 < lo || c1 > hi) {
          o = replacement(dst, o);
          continue;
        }
        if (need === 1) {
          dst[o] = c;
          dst[o + 1] = c1;
          o += 2;
          i += 1;
          continue;
        }
        const c2 = src[i + 1] as number;
        if (c2 < 0x80 || c2 > 0xbf) {
          o = replacement(dst, o);
          i += 1;
          continue;
        }
        if (need === 2) {
          dst[o] = c;
          dst[o + 1] = c1;
          dst[o + 2] = c2;
          o += 3;
          i += 2;
          continue;
        }
        const c3 = src[i + 2] as number;
        if (c3 < 0x80 || c3 > 0xbf) {
          o = replacement(dst, o);
          i += 2;
          continue;
        }
        dst[o] = c;
        dst[o + 1] = c1;
        dst[o + 2] = c2;
        dst[o + 3] = c3;
        o += 4;
        i += 3;
        continue;
      }
      // split at the end of this output: carried over to the next
      this.need = need;
      this.lo = lo;
      this.hi = hi;
      this.seen[0] = c;
      this.seenLen = 1;
    }
    return o;
  }
}

/** Where an incomplete character at the end of src[i..end) begins (end when there is none). */
function completeEnd(src: Uint8Array, i: number, end: number): number {
  for (let j = end - 1; j >= i && j >= end - 3; j--) {
    const c = src[j] as number;
    if (c < 0x80) return end;
    if (c >= 0xc0) {
      const len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
      return end - j < len ? j : end;
    }
  }
  return end;
}

/** Writes the JSON escape of byte c (a quote, a backslash or a control) at o; answers the new end. */
function escapeByte(dst: Uint8Array, o: number, c: number): number {
  const s = SHORT[c] as number;
  dst[o] = 0x5c;
  if (s !== 0) {
    dst[o + 1] = s;
    return o + 2;
  }
  dst[o + 1] = 0x75; // u
  dst[o + 2] = 0x30;
  dst[o + 3] = 0x30;
  dst[o + 4] = HEX[c >> 4] as number;
  dst[o + 5] = HEX[c & 15] as number;
  return o + 6;
}

function replacement(dst: Uint8Array, o: number): number {
  dst[o] = 0xef;
  dst[o + 1] = 0xbf;
  dst[o + 2] = 0xbd;
  return o + 3;
}

function line(t: number, code: string, data: string): string {
  return `${JSON.stringify([Math.max(0, Math.round(t * 1e6) / 1e6), code, data])}\n`;
}
