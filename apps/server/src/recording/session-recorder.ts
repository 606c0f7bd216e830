import { castEncoder, type EncoderEvent } from './cast-encoder';
import { ECHO_OFF_MARKER, headerLine, TRUNCATED_MARKER, type CastCode, type CastHeader } from './asciicast';
import { ECHO_WAIT_MS, InputLines } from './input-lines';
import type { SessionTap } from '../terminal/session-tap';
import type { RecordingSink, RecordingStore } from './recording-store';

export type { SessionTap } from '../terminal/session-tap';

/** Bytes held (batched, being encoded, encoded but not yet written) above which the session pauses the exec. */
export const RECORDER_HIGH_WATER = 8 * 1024 * 1024;
/** Held bytes past which output is dropped (the exec ignored the pause); the recording is marked truncated. */
export const RECORDER_HARD_LIMIT = 32 * 1024 * 1024;
/** Output is handed to the encoder thread in batches of about this size (or at the end of the tick). */
const BATCH_BYTES = 256 * 1024;

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
  /** output not yet handed to the encoder: copied straight into the batch's buffer */
  private raw: Uint8Array<ArrayBuffer> | undefined;
  private rawBytes = 0;
  private events: EncoderEvent[] = [];
  private batchTimer: NodeJS.Immediate | undefined;
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
    this.opened = store.create(o.id).then(
      (s) => {
        this.sink = s;
      },
      (err: unknown) => {
        this.fail(`could not create the recording: ${(err as Error).message}`);
      },
    );
    castEncoder.open(o.id, o.maxBytes, {
      chunk: (out, rawBytes) => {
        this.encoding -= rawBytes;
        this.write(out);
      },
      closed: (out, summary) => {
        this.write(out);
        this.done?.(summary);
      },
      failed: (message) => {
        this.fail(message);
        this.done?.({ bytes: 0, sha256: '', truncated: true });
      },
    });
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
    this.raw ??= new Uint8Array(new ArrayBuffer(Math.max(BATCH_BYTES, bytes.length)));
    this.raw.set(bytes, this.rawBytes);
    this.events.push({ t: this.t(), code: 'o', off: this.rawBytes, len: bytes.length });
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
    this.schedule();
  }

  private schedule(): void {
    this.batchTimer ??= setImmediate(() => {
      this.batchTimer = undefined;
      this.flushBatch();
    });
  }

  /** Hands the batch (bytes and events, in order) to the encoder thread. */
  private flushBatch(): void {
    if (this.batchTimer) clearImmediate(this.batchTimer);
    this.batchTimer = undefined;
    if (this.events.length === 0) return;
    // A well-filled buffer is transferred to the thread as it is (no copy; the events name its
    // used part); a small batch (a keystroke's echo) is copied out and the buffer kept for the next.
    let raw: ArrayBuffer;
    if (!this.raw) raw = new ArrayBuffer(0);
    else if (this.rawBytes * 4 >= this.raw.length) {
      raw = this.raw.buffer;
      this.raw = undefined;
    } else raw = this.raw.buffer.slice(0, this.rawBytes);
    this.encoding += this.rawBytes;
    castEncoder.batch(this.o.id, raw, this.rawBytes, this.events);
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
      const chunk = this.queue.length === 1 ? (this.queue[0] ?? Buffer.alloc(0)) : Buffer.concat(this.queue);
      this.queue = [];
      this.inFlight = chunk.length;
      this.queued = 0;
      try {
        if (this.sink && this.error === undefined) await this.sink.write(chunk);
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
