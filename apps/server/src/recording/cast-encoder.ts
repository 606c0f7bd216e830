import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

import type { EncodedSummary, EncoderEvent, FromEncoder, ToEncoder } from './cast-encoder-protocol';
import { REUSE_MIN_BYTES } from './cast-line-encoder';

/** Written chunks' buffers kept for the next batch to the thread, at most. */
const REUSE_PENDING = 4;

export type { EncoderEvent } from './cast-encoder-protocol';

/**
 * Serialising output as asciicast (UTF-8 validation, JSON escaping) and hashing it costs more CPU
 * per byte than relaying it, so it runs on one worker thread shared by all recordings
 * (cast-encoder.worker.ts, encoding in cast-line-encoder.ts): the session thread only copies the
 * bytes into a batch and writes what comes back. The thread keeps per recording the UTF-8 state,
 * the byte count, the size cap and the SHA-256.
 */

/**
 * The worker's module next to this one: the compiled `.js` in the built server, the `.ts` source
 * when the server runs from its sources (vitest, tsx), loaded through tsx's require hook.
 */
export function encoderWorkerEntry(): { file: string; execArgv?: string[] } {
  if (!__filename.endsWith('.ts')) return { file: join(__dirname, 'cast-encoder.worker.js') };
  const tsx = createRequire(__filename).resolve('tsx/cjs');
  return { file: join(__dirname, 'cast-encoder.worker.ts'), execArgv: ['--require', tsx] };
}

export interface EncoderHandlers {
  /**
   * encoded bytes to write, in order (none when the thread wrote them to the sink's fd itself);
   * `rawBytes` of the batch they came from are done, its shared `slot` (if it was in one) free;
   * `error` when the thread's write failed
   */
  chunk(out: Buffer | undefined, rawBytes: number, slot: number | undefined, error?: string): void;
  closed(out: Buffer | undefined, summary: EncodedSummary, error?: string): void;
  failed(message: string): void;
}

class CastEncoderThread {
  private worker: Worker | undefined;
  private readonly handlers = new Map<string, EncoderHandlers>();
  /** written chunks' buffers waiting for the next batch to the thread */
  private given: ArrayBuffer[] = [];

  private get thread(): Worker {
    if (this.worker) return this.worker;
    const entry = encoderWorkerEntry();
    const w = new Worker(entry.file, {
      name: 'periscope-recording',
      ...(entry.execArgv ? { execArgv: entry.execArgv } : {}),
    });
    w.unref();
    w.on('message', (m: FromEncoder) => {
      const h = this.handlers.get(m.id);
      if (!h) return;
      const out = m.out ? Buffer.from(m.out, 0, m.outBytes) : undefined;
      if (m.type === 'chunk') h.chunk(out, m.rawBytes, m.slot, m.error);
      else {
        this.handlers.delete(m.id);
        if (this.handlers.size === 0) w.unref();
        h.closed(out, { bytes: m.bytes, sha256: m.sha256, truncated: m.truncated }, m.error);
      }
    });
    const fail = (message: string): void => {
      // an 'exit' after an 'error', or of a thread already replaced: its recordings were told
      if (this.worker !== w) return;
      this.worker = undefined;
      const all = [...this.handlers.values()];
      this.handlers.clear();
      for (const h of all) h.failed(message);
    };
    w.on('error', (err) => {
      fail(`the recording thread failed: ${err.message}`);
    });
    w.on('exit', (code) => {
      fail(`the recording thread exited (${code})`);
    });
    this.worker = w;
    return w;
  }

  /** `slots`: the recording's shared batch memory (slots of `slotBytes`), shared with the thread once. */
  open(
    id: string,
    maxBytes: number,
    h: EncoderHandlers,
    shared?: { slots: SharedArrayBuffer; slotBytes: number },
  ): void {
    this.handlers.set(id, h);
    // A running recording keeps the thread (and so the process) alive until it is closed.
    this.thread.ref();
    this.post({ type: 'open', id, maxBytes, ...(shared ?? {}) });
  }

  /** A batch in shared slot `batch.slot`, or in `batch.raw` (transferred). */
  batch(
    id: string,
    batch: { slot: number } | { raw: ArrayBuffer },
    rawBytes: number,
    events: EncoderEvent[],
  ): void {
    // written chunks' memory rides along to be filled again (no message of its own)
    const give = this.given;
    this.given = [];
    this.post({ type: 'batch', id, ...batch, rawBytes, events, ...(give.length > 0 ? { give } : {}) }, [
      ...('raw' in batch ? [batch.raw] : []),
      ...give,
    ]);
  }

  /**
   * The store is open: the thread writes to `fd` itself (the aligned part of each write through
   * `directFd`, O_DIRECT, where there is one), or (no fd) answers the bytes.
   */
  sink(id: string, fd: number | undefined, directFd?: number): void {
    this.post({
      type: 'sink',
      id,
      ...(fd !== undefined ? { fd } : {}),
      ...(fd !== undefined && directFd !== undefined ? { directFd } : {}),
    });
  }

  close(id: string, t: number): void {
    this.post({ type: 'close', id, t });
  }

  /**
   * Gives an encoded chunk's memory back once it is written: it goes to the thread with the next
   * batch (transferred then), to be filled again. Small ones are left to the GC; at most
   * REUSE_PENDING wait here.
   */
  giveBack(buf: ArrayBuffer): void {
    if (buf.byteLength >= REUSE_MIN_BYTES && this.given.length < REUSE_PENDING) this.given.push(buf);
  }

  private post(m: ToEncoder, transfer: ArrayBuffer[] = []): void {
    this.thread.postMessage(m, transfer);
  }
}

/** The shared encoder thread (started on first use). */
export const castEncoder = new CastEncoderThread();
