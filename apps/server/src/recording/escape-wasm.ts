/**
 * The JSON-string escape of valid UTF-8 (CastLineEncoder's hot loop) as a small WebAssembly
 * module using SIMD: 16 bytes per step while none needs escaping, instead of JavaScript's 4. The
 * module is emitted here, opcode by opcode (no toolchain, no checked-in binary): its source is
 * this file. escape-wasm.spec.ts checks that it validates and that CastLineEncoder writes the same
 * bytes with it as without it.
 *
 * Memory layout: [0, 256) the escape letter per byte (0: copied as it is; `u`: `\u00XX`),
 * [256, 272) hex digits, then the caller's input and output regions (see cast-line-encoder.ts).
 *
 * `escape(src, end, dst)`: writes memory[src..end) (whole UTF-8 characters, or any bytes ≥ 0x80:
 * they are copied as they are) JSON-escaped at dst; answers the new end of the output. At most 6
 * bytes out per byte in, plus up to 16 written past the answered end (scratch, overwritten).
 * `escapeAscii(src, end, dst)`: the same, stopping before the first byte ≥ 0x80 (plain ASCII, most
 * terminal output, needs no UTF-8 check); the input position it reached is the i32 at ASCII_STOP_AT.
 */

/** The few WebAssembly APIs used here (the project's TypeScript libs declare none). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object) => { readonly exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}
const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

/** Whether this runtime accepts the module (WebAssembly with SIMD). */
export function escapeWasmValid(): boolean {
  return wasmApi?.validate(escapeWasmBytes()) === true;
}

/** Where the caller may put its own bytes (after the tables). */
export const WASM_TABLES_END = 4096;

// opcodes
const BLOCK = 0x02;
const LOOP = 0x03;
const IF = 0x04;
const VOID = 0x40;
const END = 0x0b;
const BR = 0x0c;
const BR_IF = 0x0d;
const RETURN = 0x0f;
const LOCAL_GET = 0x20;
const LOCAL_SET = 0x21;
const I32_LOAD8_U = 0x2d;
const I32_STORE = 0x36;
const I32_STORE8 = 0x3a;
const I32_CONST = 0x41;
const I32_EQZ = 0x45;
const I32_EQ = 0x46;
const I32_GT_U = 0x4b;
const I32_CTZ = 0x68;
const I32_ADD = 0x6a;
const I32_AND = 0x71;
const I32_SHR_U = 0x76;
const SIMD = 0xfd;
const V128_LOAD = 0x00;
const V128_STORE = 0x0b;
const V128_CONST = 0x0c;
const I8X16_EQ = 0x23;
const I8X16_LT_S = 0x25;
const I8X16_LT_U = 0x26;
const V128_OR = 0x50;
const I8X16_BITMASK = 0x64;
const T_I32 = 0x7f;
const T_V128 = 0x7b;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const name = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s, 'latin1')];

// the function's locals: params src, end, dst; then v (v128), m, c, e (i32)
const SRC = 0;
const END_ = 1;
const DST = 2;
const V = 3;
const M = 4;
const C = 5;
const E = 6;

const get = (l: number): number[] => [LOCAL_GET, l];
const set = (l: number): number[] => [LOCAL_SET, l];
const i32 = (n: number): number[] => [I32_CONST, ...sleb(n)];
/** l += n (a constant) */
const addConst = (l: number, n: number): number[] => [...get(l), ...i32(n), I32_ADD, ...set(l)];
/** l += the local k */
const addLocal = (l: number, k: number): number[] => [...get(l), ...get(k), I32_ADD, ...set(l)];
const splat = (b: number): number[] => [SIMD, V128_CONST, ...new Array<number>(16).fill(b)];
/** store8 at dst + offset of the value the code pushes */
const storeAt = (offset: number, value: number[]): number[] => [
  ...get(DST),
  ...value,
  I32_STORE8,
  0,
  ...uleb(offset),
];

/** Where `escapeAscii` leaves the input position it stopped at (after the tables). */
export const ASCII_STOP_AT = 272;
/** escapeAscii: stores src at ASCII_STOP_AT and answers dst. */
const stopHere = (): number[] => [...i32(ASCII_STOP_AT), ...get(SRC), I32_STORE, 2, 0, ...get(DST), RETURN];

/**
 * The function's body. `asciiOnly` (escapeAscii): the same, but it stops before the first byte ≥ 0x80
 * (ASCII_STOP_AT says where), so that only output with other bytes needs a UTF-8 check; its
 * SIMD test is a signed compare with 0x20, true for bytes ≥ 0x80 too, at no extra cost.
 */
// prettier-ignore
const escapeBody = (asciiOnly: boolean): number[] => [
  LOOP, VOID, // $outer
  BLOCK, VOID, // $one: one byte at src, by the table
  LOOP, VOID, // $simd
  // fewer than 16 bytes left: one at a time
  ...get(SRC), ...i32(16), I32_ADD, ...get(END_), I32_GT_U, BR_IF, 1,
  ...get(SRC), SIMD, V128_LOAD, 0, 0, ...set(V),
  // m: a bit per byte < 0x20, `"` or `\`
  ...get(V), ...splat(0x20), SIMD, asciiOnly ? I8X16_LT_S : I8X16_LT_U,
  ...get(V), ...splat(0x22), SIMD, I8X16_EQ, SIMD, V128_OR,
  ...get(V), ...splat(0x5c), SIMD, I8X16_EQ, SIMD, V128_OR,
  SIMD, I8X16_BITMASK, ...set(M),
  // the 16 bytes are stored either way: those from the first to escape on are written over
  ...get(DST), ...get(V), SIMD, V128_STORE, 0, 0,
  ...get(M), I32_EQZ,
  IF, VOID,
  ...addConst(SRC, 16), ...addConst(DST, 16), BR, 1,
  END,
  // skip to the first byte to escape, and escape it
  ...get(M), I32_CTZ, ...set(E),
  ...addLocal(SRC, E), ...addLocal(DST, E), BR, 1,
  END, // $simd
  END, // $one
  ...get(SRC), ...get(END_), I32_EQ,
  IF, VOID, ...(asciiOnly ? stopHere() : [...get(DST), RETURN]), END,
  ...get(SRC), I32_LOAD8_U, 0, 0, ...set(C),
  ...(asciiOnly ? [...get(C), ...i32(0x7f), I32_GT_U, IF, VOID, ...stopHere(), END] : []),
  ...addConst(SRC, 1),
  ...get(C), I32_LOAD8_U, 0, 0, ...set(E),
  ...get(E), I32_EQZ,
  IF, VOID,
  ...storeAt(0, get(C)), ...addConst(DST, 1), BR, 1, // $outer
  END,
  ...storeAt(0, i32(0x5c)),
  ...storeAt(1, get(E)),
  ...get(E), ...i32(0x75), I32_EQ,
  IF, VOID,
  ...storeAt(2, i32(0x30)),
  ...storeAt(3, i32(0x30)),
  ...storeAt(4, [...get(C), ...i32(4), I32_SHR_U, I32_LOAD8_U, 0, ...uleb(256)]),
  ...storeAt(5, [...get(C), ...i32(15), I32_AND, I32_LOAD8_U, 0, ...uleb(256)]),
  ...addConst(DST, 6), BR, 1,
  END,
  ...addConst(DST, 2), BR, 0,
  END, // $outer
  ...get(DST),
  END,
];

/** The escape table and the hex digits, as the data segment at address 0. */
function tables(): number[] {
  const t = new Array<number>(272).fill(0);
  for (let c = 0; c < 0x20; c++) t[c] = 0x75; // u
  t[0x08] = 0x62; // b
  t[0x09] = 0x74; // t
  t[0x0a] = 0x6e; // n
  t[0x0c] = 0x66; // f
  t[0x0d] = 0x72; // r
  t[0x22] = 0x22;
  t[0x5c] = 0x5c;
  Buffer.from('0123456789abcdef', 'latin1').forEach((b, k) => (t[256 + k] = b));
  return t;
}

/** The module's bytes. */
export function escapeWasmBytes(): Uint8Array<ArrayBuffer> {
  const locals = vec([
    [1, T_V128],
    [3, T_I32],
  ]);
  const fn = [...locals, ...escapeBody(false)];
  const ascii = [...locals, ...escapeBody(true)];
  const data = tables();
  // prettier-ignore
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, ...vec([[T_I32], [T_I32], [T_I32]]), ...vec([[T_I32]])]])),
    ...section(3, vec([[0], [0]])),
    // one memory, 1 page to start (the caller grows it)
    ...section(5, vec([[0x00, 1]])),
    ...section(7, vec([[...name('escape'), 0x00, 0], [...name('escapeAscii'), 0x00, 1], [...name('memory'), 0x02, 0]])),
    ...section(10, vec([[...uleb(fn.length), ...fn], [...uleb(ascii.length), ...ascii]])),
    ...section(11, vec([[0x00, ...i32(0), END, ...uleb(data.length), ...data]])),
  ]);
}

export interface EscapeWasm {
  memory: WasmMemory;
  escape: (src: number, end: number, dst: number) => number;
  /** as escape, stopping before the first byte ≥ 0x80; the input position reached is at ASCII_STOP_AT */
  escapeAscii: (src: number, end: number, dst: number) => number;
}

/** The module, instantiated; undefined where WebAssembly SIMD is not there (the JS loop is used). */
export function loadEscapeWasm(): EscapeWasm | undefined {
  try {
    if (!wasmApi || !escapeWasmValid()) return undefined;
    const inst = new wasmApi.Instance(new wasmApi.Module(escapeWasmBytes()));
    const e = inst.exports as unknown as EscapeWasm;
    return { memory: e.memory, escape: e.escape, escapeAscii: e.escapeAscii };
  } catch {
    return undefined;
  }
}
