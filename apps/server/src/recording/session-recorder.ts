import { castEncoder, type EncoderEvent, type EncoderHandlers } from './cast-encoder';
import { ECHO_OFF_MARKER, headerLine, TRUNCATED_MARKER, type CastCode, type CastHeader } from './asciicast';
import { ECHO_WAIT_MS, InputLines } from './input-lines';
import { copyInto } from './shared-copy';
import type { SessionTap } from '../terminal/session-tap';
import type { RecordingSink, RecordingStore } from './recording-store';

export type { SessionTap } from '../terminal/session-tap';

/** Bytes held (batched, being encoded, encoded but not yet written) above which the session pauses the exec. */
export const RECORDER_HIGH_WATER = 8 * 1024 * 1024;
/** Held bytes past which output is dropped (the exec ignored the pause); the recording is marked truncated. */
export const RECORDER_HARD_LIMIT = 32 * 1024 * 1024;
/** Output is handed to the encoder thread in batches of about this size, or BATCH_MS after the batch began. */
const BATCH_BYTES = 1024 * 1024;
/**
 * Batches are written into memory shared with the encoder thread, this many slots of BATCH_BYTES
 * per recording (virtual: only the pages a batch fills are touched): handing one over is a
 * message with its slot number, no transfer, so neither isolate sees new external memory (which
 * made V8 run extra full collections, ≈ one per 64 MiB of output in each). When both slots are
 * still with the thread, or one read is larger than a slot, a batch goes in memory of its own,
 * transferred as before.
 */
const SLOTS = 2;
/**
 * How long a batch collects before it goes to the encoder thread. Each batch is one message to the
 * thread, one back and one write, so a flow of small reads (a pod's output arrives in 1–16 KiB
 * frames) costs far less CPU per MiB in one batch every few milliseconds than in one per tick.
 */
export const BATCH_MS = 25;
/**
 * Output read within this long of an output event's first byte (and nothing else in between) is
 * appended to that event: one asciicast event per burst instead of one per read, a smaller file
 * and less to encode, and no player shows the difference. Its time is that of its first byte.
 */
export const COALESCE_MS = 10;

export interface RecorderOptions {
  id: string;
  mode: 'output' | 'output+input';
  /** the file's size cap in bytes, header included */
  maxBytes: number;
  header: CastHeader;
  /** epoch ms of the session's start (t = 0) */
  startedAt: number;
  now?: () => number;
  onError?: (message: string) => void;
}

export interface RecordingSummary {
  id: string;
  bytes: number;
  sha256: string;
  truncated: boolean;
  error?: string;
}

/**
 * Writes one session as asciicast v2, incrementally: output bytes are batched (bounded, see
 * above) and encoded on the encoder thread (cast-encoder.ts), which also applies the size cap
 * and keeps the SHA-256 of exactly the bytes of the file; the encoded bytes are written in order
 * as the store takes them. Close flushes, fsyncs and answers id, size and hash for the close record.
 */
export class SessionRecorder implements SessionTap {
  private sink: RecordingSink | undefined;
  private error: string | undefined;
  private readonly opened: Promise<void>;
  /** output not yet handed to the encoder: copied straight into the batch's memory */
  private raw: Buffer | undefined;
  private rawBytes = 0;
  /** the shared slot `raw` is, when it is one */
  private rawSlot: number | undefined;
  /** the batch memory shared with the encoder thread (SLOTS × BATCH_BYTES), and its free slots */
  private readonly slots = new SharedArrayBuffer(SLOTS * BATCH_BYTES);
  private readonly freeSlots: number[] = [];
  private events: EncoderEvent[] = [];
  /** the last event of the batch when it is output (coalescing appends to it), and its time in ms */
  private lastOutput: { off: number; len: number } | undefined;
  private lastOutputAt = 0;
  private batchTimer: NodeJS.Timeout | undefined;
  /** raw bytes with the encoder */
  private encoding = 0;
  /** encoded bytes waiting for the store */
  private queue: Buffer[] = [];
  private queued = 0;
  private inFlight = 0;
  private flushing: Promise<void> | undefined;
  private dropped = false;
  private closed = false;
  private readonly lines: InputLines | undefined;
  private settleTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private finished: Promise<RecordingSummary> | undefined;
  private done: ((s: { bytes: number; sha256: string; truncated: boolean }) => void) | undefined;
  private readonly result: Promise<{ bytes: number; sha256: string; truncated: boolean }>;
  private readonly inDecoder = new TextDecoder('utf-8');

  constructor(
    store: RecordingStore,
    private readonly o: RecorderOptions,
  ) {
    this.now = o.now ?? Date.now;
    this.result = new Promise((resolve) => {
      this.done = resolve;
    });
    for (let k = SLOTS - 1; k >= 0; k--) this.freeSlots.push(k);
    const handlers: EncoderHandlers = {
      chunk: (out, rawBytes, slot, error) => {
        this.encoding -= rawBytes;
        // the thread is done with the slot's bytes: free for a next batch
        if (slot !== undefined) this.freeSlots.push(slot);
        if (error !== undefined) this.fail(error);
        if (out) this.write(out);
      },
      closed: (out, summary, error) => {
        if (error !== undefined) this.fail(error);
        if (out) this.write(out);
        this.done?.(summary);
      },
      failed: (message) => {
        this.fail(message);
        this.done?.({ bytes: 0, sha256: '', truncated: true });
      },
    };
    castEncoder.open(o.id, o.maxBytes, handlers, { slots: this.slots, slotBytes: BATCH_BYTES });
    // A file is written by the encoder thread itself (its fd); other stores get the bytes back.
    this.opened = store.create(o.id).then(
      (s) => {
        this.sink = s;
        castEncoder.sink(o.id, s.fd, s.directFd);
      },
      (err: unknown) => {
        this.fail(`could not create the recording: ${(err as Error).message}`);
        castEncoder.sink(o.id, undefined);
      },
    );
    this.events.push({ t: 0, code: 'H', data: headerLine(o.header) });
    this.schedule();
    if (o.mode === 'output+input')
      this.lines = new InputLines((d) => {
        if (d.kind === 'line') this.event('i', `${d.text}\r`);
        else this.event('m', ECHO_OFF_MARKER);
      });
  }

  get ready(): boolean {
    return this.held < RECORDER_HIGH_WATER;
  }

  private get held(): number {
    return this.rawBytes + this.encoding + this.queued + this.inFlight;
  }

  output(bytes: Uint8Array): void {
    if (this.closed || this.dropped) return;
    if (this.held > RECORDER_HARD_LIMIT) {
      this.dropped = true;
      this.event('m', TRUNCATED_MARKER);
      return;
    }
    // A copy (the source may be a view into a transport buffer that is reused), into the batch.
    if (this.raw && this.rawBytes + bytes.length > this.raw.length) this.flushBatch();
    // (a kept buffer too small for this chunk alone goes)
    if (this.raw && bytes.length > this.raw.length) this.raw = undefined;
    if (!this.raw) {
      const k = bytes.length <= BATCH_BYTES ? this.freeSlots.pop() : undefined;
      this.rawSlot = k;
      // a shared slot, else memory of its own, not zero-filled (only the copied bytes are read)
      this.raw =
        k !== undefined
          ? Buffer.from(this.slots, k * BATCH_BYTES, BATCH_BYTES)
          : Buffer.allocUnsafeSlow(Math.max(BATCH_BYTES, bytes.length));
    }
    copyInto(this.raw, bytes, this.rawBytes);
    const now = this.now();
    const last = this.lastOutput;
    if (last && last.off + last.len === this.rawBytes && now - this.lastOutputAt <= COALESCE_MS)
      last.len += bytes.length;
    else {
      const ev = {
        t: (now - this.o.startedAt) / 1000,
        code: 'o' as const,
        off: this.rawBytes,
        len: bytes.length,
      };
      this.events.push(ev);
      this.lastOutput = ev;
      this.lastOutputAt = now;
    }
    this.rawBytes += bytes.length;
    // Decoded for the echo check only while a line is typed or waits for its echo (not for bulk output).
    if (this.lines?.listening)
      this.lines.output(
        Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8'),
        this.now(),
      );
    if (this.rawBytes >= BATCH_BYTES) this.flushBatch();
    else this.schedule();
  }

  input(bytes: Uint8Array): void {
    if (!this.lines || this.closed) return;
    this.lines.keys(this.inDecoder.decode(bytes, { stream: true }), this.now());
    if (this.lines.waiting && !this.settleTimer) {
      this.settleTimer = setTimeout(() => {
        this.settleTimer = undefined;
        this.lines?.settle(this.now());
      }, ECHO_WAIT_MS + 20);
      this.settleTimer.unref();
    }
  }

  resize(cols: number, rows: number): void {
    if (!this.closed) this.event('r', `${cols}x${rows}`);
  }

  async close(): Promise<Record<string, unknown>> {
    const s = await this.finish();
    return {
      recording_id: s.id,
      recording_bytes: s.bytes,
      recording_sha256: s.sha256,
      recording_mode: this.o.mode,
      ...(s.truncated ? { recording_truncated: true } : {}),
      ...(s.error !== undefined ? { recording_error: s.error } : {}),
    };
  }

  /** Flushes, makes durable and answers the summary; once (later calls answer the same). */
  finish(): Promise<RecordingSummary> {
    this.finished ??= this.complete();
    return this.finished;
  }

  private async complete(): Promise<RecordingSummary> {
    this.lines?.settle(this.now(), true);
    this.closed = true;
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.flushBatch();
    castEncoder.close(this.o.id, this.t());
    const summary = await this.result;
    while (this.flushing) await this.flushing;
    if (this.sink) {
      const sink = this.sink;
      this.sink = undefined;
      try {
        await sink.close();
      } catch (err) {
        this.fail(`could not complete the recording: ${(err as Error).message}`);
      }
    }
    return {
      id: this.o.id,
      ...summary,
      truncated: summary.truncated || this.dropped,
      ...(this.error !== undefined ? { error: this.error } : {}),
    };
  }

  private t(): number {
    return (this.now() - this.o.startedAt) / 1000;
  }

  private event(code: Exclude<CastCode, 'o'>, data: string): void {
    this.events.push({ t: this.t(), code, data });
    this.lastOutput = undefined;
    this.schedule();
  }

  private schedule(): void {
    this.batchTimer ??= setTimeout(() => {
      this.batchTimer = undefined;
      this.flushBatch();
    }, BATCH_MS);
  }

  /** Hands the batch (bytes and events, in order) to the encoder thread. */
  private flushBatch(): void {
    if (this.batchTimer) clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    this.lastOutput = undefined;
    if (this.events.length === 0) return;
    // A shared slot goes by its number. Memory of its own, well filled, is transferred as it is
    // (no copy; the events name its used part); a small batch in it (a keystroke's echo while both
    // slots are busy) is copied out and the memory kept for the next.
    let batch: { slot: number } | { raw: ArrayBuffer };
    if (this.rawSlot !== undefined) {
      batch = { slot: this.rawSlot };
      this.raw = undefined;
      this.rawSlot = undefined;
    } else if (!this.raw) batch = { raw: new ArrayBuffer(0) };
    else if (this.rawBytes * 4 >= this.raw.length) {
      batch = { raw: this.raw.buffer as ArrayBuffer };
      this.raw = undefined;
    } else batch = { raw: (this.raw.buffer as ArrayBuffer).slice(0, this.rawBytes) };
    this.encoding += this.rawBytes;
    castEncoder.batch(this.o.id, batch, this.rawBytes, this.events);
    this.rawBytes = 0;
    this.events = [];
  }

  private write(out: Buffer): void {
    if (out.length === 0 || this.error !== undefined) return;
    this.queue.push(out);
    this.queued += out.length;
    this.flushing ??= this.drain().finally(() => {
      this.flushing = undefined;
    });
  }

  private async drain(): Promise<void> {
    await this.opened;
    while (this.queue.length > 0) {
      const parts = this.queue;
      const chunk = parts.length === 1 ? (parts[0] ?? Buffer.alloc(0)) : Buffer.concat(parts);
      this.queue = [];
      // the encoder's chunks go back to it to be filled again once their bytes are copied or written
      if (parts.length > 1) for (const p of parts) castEncoder.giveBack(p.buffer as ArrayBuffer);
      this.inFlight = chunk.length;
      this.queued = 0;
      try {
        if (this.sink && this.error === undefined) {
          await this.sink.write(chunk);
          if (parts.length === 1) castEncoder.giveBack(chunk.buffer as ArrayBuffer);
        }
      } catch (err) {
        this.fail(`could not write the recording: ${(err as Error).message}`);
      } finally {
        this.inFlight = 0;
      }
    }
  }

  private fail(message: string): void {
    if (this.error !== undefined) return;
    this.error = message;
    this.queue = [];
    this.queued = 0;
    this.o.onError?.(message);
  }
}
