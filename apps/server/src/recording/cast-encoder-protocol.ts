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
  /**
   * `slots`: the recording's batch memory shared with the thread, slots of `slotBytes` each, so
   * that a batch is handed over without a transfer (no new ArrayBuffer, no external memory for
   * either isolate's garbage collector to count)
   */
  | { type: 'open'; id: string; maxBytes: number; slots?: SharedArrayBuffer; slotBytes?: number }
  /**
   * The batch's bytes: slot `slot` of the shared memory (given back by the chunk's `slot`), or
   * `raw`, transferred (no slot was free, or one read was larger than a slot); its first
   * `rawBytes` are the batch's, the events name ranges of them, in order
   */
  | {
      type: 'batch';
      id: string;
      slot?: number;
      raw?: ArrayBuffer;
      rawBytes: number;
      events: EncoderEvent[];
      /** encoded chunks' buffers, written: the thread fills them again (transferred) */
      give?: ArrayBuffer[];
    }
  /**
   * The store is open: with `fd`, the thread writes the recording's bytes to that file itself
   * (in order, synchronously; the session thread closes it only after `closed`), and its chunks
   * answer no bytes; without, they carry the bytes for the session thread to write. Until it comes,
   * the thread keeps the encoded bytes (bounded: the session thread counts them as held).
   * `directFd`: the same file opened with O_DIRECT, for the aligned part of each write (no page
   * cache); the thread falls back to `fd` when a direct write fails.
   */
  | { type: 'sink'; id: string; fd?: number; directFd?: number }
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
   * that batch's raw size
   */
  | {
      type: 'chunk';
      id: string;
      rawBytes: number;
      /** none when the thread wrote them itself (or has them still, waiting for the `sink`) */
      out?: ArrayBuffer;
      outBytes: number;
      /** the batch's shared slot, free again */
      slot?: number;
      /** the thread's write to the file failed: nothing more is written */
      error?: string;
    }
  /** the last bytes (none when the thread wrote them) and the summary; the thread forgets the recording */
  | ({ type: 'closed'; id: string; out?: ArrayBuffer; outBytes: number; error?: string } & EncodedSummary);
