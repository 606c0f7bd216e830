/**
 * The messages between the session threads' SessionRecorders (through cast-encoder.ts) and the
 * recording thread (cast-encoder.worker.ts). Types only: both sides import them with `import type`.
 */

/** Output: `len` bytes at `off` in the batch's `raw` bytes, received at `t` seconds. */
export interface OutputEvent {
  t: number;
  code: 'o';
  off: number;
  len: number;
}

/** Input, resize or marker, already text; `H` is the header line, written as it is. */
export interface TextEvent {
  t: number;
  code: 'i' | 'r' | 'm' | 'H';
  data: string;
}

export type EncoderEvent = OutputEvent | TextEvent;

export type ToEncoder =
  | { type: 'open'; id: string; maxBytes: number }
  /** `raw` is transferred; its first `rawBytes` are the batch's, the events name ranges of them, in order */
  | {
      type: 'batch';
      id: string;
      raw: ArrayBuffer;
      rawBytes: number;
      events: EncoderEvent[];
      /** encoded chunks' buffers, written: the thread fills them again (transferred) */
      give?: ArrayBuffer[];
    }
  | { type: 'close'; id: string; t: number };

export interface EncodedSummary {
  /** bytes of the file, header included */
  bytes: number;
  /** SHA-256 (hex) of exactly those bytes */
  sha256: string;
  truncated: boolean;
}

export type FromEncoder =
  /**
   * the encoded bytes of one batch (the first `outBytes` of `out`, transferred); `rawBytes` is
   * that batch's raw size; `raw` the
   * batch's buffer given back (transferred) for the next batch when it was a full-size one
   */
  | { type: 'chunk'; id: string; rawBytes: number; out: ArrayBuffer; outBytes: number; raw?: ArrayBuffer }
  /** the last bytes and the summary; the recording is forgotten by the thread */
  | ({ type: 'closed'; id: string; out: ArrayBuffer; outBytes: number } & EncodedSummary);
