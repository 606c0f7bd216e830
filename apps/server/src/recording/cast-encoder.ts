import { Worker } from 'node:worker_threads';

/**
 * Serialising output as asciicast (UTF-8 decoding, JSON escaping) and hashing it costs more CPU
 * per byte than relaying it, so it runs on one worker thread shared by all recordings: the
 * session thread only copies the bytes into a batch and writes what comes back. The worker keeps
 * per recording the UTF-8 decoder state, the byte count, the size cap and the SHA-256.
 *
 * The worker's code is plain JavaScript evaluated from this string (no build step or loader is
 * involved, so it runs the same from the built server and from the TypeScript sources in tests).
 */
const WORKER_SOURCE = String.raw`
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { StringDecoder } = require('node:string_decoder');
const MARKER_ROOM = 128;
const recs = new Map();
const line = (t, code, data) => JSON.stringify([Math.max(0, Math.round(t * 1e6) / 1e6), code, data]) + '\n';
function add(r, parts, t, code, data) {
  if (r.truncated) return;
  let b = Buffer.from(code === 'H' ? data : line(t, code, data), 'utf8');
  if (r.bytes + b.length > r.max - MARKER_ROOM) {
    r.truncated = true;
    b = Buffer.from(line(t, 'm', 'truncated'), 'utf8');
  }
  r.hash.update(b);
  r.bytes += b.length;
  parts.push(b);
}
function pack(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const ab = new ArrayBuffer(n);
  const u = new Uint8Array(ab);
  let o = 0;
  for (const p of parts) { u.set(p, o); o += p.length; }
  return ab;
}
parentPort.on('message', (m) => {
  if (m.type === 'open') {
    recs.set(m.id, { dec: new StringDecoder('utf8'), hash: createHash('sha256'), bytes: 0, max: m.maxBytes, truncated: false });
    return;
  }
  const r = recs.get(m.id);
  if (!r) return;
  const parts = [];
  if (m.type === 'batch') {
    const raw = Buffer.from(m.raw);
    for (const ev of m.events) {
      if (ev[1] === 'o') {
        const text = r.dec.write(raw.subarray(ev[3], ev[3] + ev[4]));
        if (text !== '') add(r, parts, ev[0], 'o', text);
      } else add(r, parts, ev[0], ev[1], ev[2]);
    }
    const out = pack(parts);
    parentPort.postMessage({ type: 'chunk', id: m.id, rawBytes: m.raw.byteLength, out }, [out]);
    return;
  }
  if (m.type === 'close') {
    const rest = r.dec.end();
    if (rest !== '') add(r, parts, m.t, 'o', rest);
    const out = pack(parts);
    recs.delete(m.id);
    parentPort.postMessage(
      { type: 'closed', id: m.id, out, bytes: r.bytes, sha256: r.hash.digest('hex'), truncated: r.truncated },
      [out],
    );
  }
});
`;

/** One event: `[seconds, code, text]`, or for output `[seconds, 'o', null, offset, length]` into the batch's bytes. */
export type EncoderEvent = [number, string, string | null, number?, number?];

export interface EncoderHandlers {
  /** encoded bytes, in order; `rawBytes` of the batch they came from are done */
  chunk(out: Buffer, rawBytes: number): void;
  closed(out: Buffer, summary: { bytes: number; sha256: string; truncated: boolean }): void;
  failed(message: string): void;
}

type FromWorker =
  | { type: 'chunk'; id: string; rawBytes: number; out: ArrayBuffer }
  | { type: 'closed'; id: string; out: ArrayBuffer; bytes: number; sha256: string; truncated: boolean };

class CastEncoderThread {
  private worker: Worker | undefined;
  private readonly handlers = new Map<string, EncoderHandlers>();

  private get thread(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER_SOURCE, { eval: true, name: 'periscope-recording' });
    w.unref();
    w.on('message', (m: FromWorker) => {
      const h = this.handlers.get(m.id);
      if (!h) return;
      if (m.type === 'chunk') h.chunk(Buffer.from(m.out), m.rawBytes);
      else {
        this.handlers.delete(m.id);
        if (this.handlers.size === 0) w.unref();
        h.closed(Buffer.from(m.out), { bytes: m.bytes, sha256: m.sha256, truncated: m.truncated });
      }
    });
    const fail = (message: string): void => {
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

  open(id: string, maxBytes: number, h: EncoderHandlers): void {
    this.handlers.set(id, h);
    // A running recording keeps the thread (and so the process) alive until it is closed.
    this.thread.ref();
    this.thread.postMessage({ type: 'open', id, maxBytes });
  }

  batch(id: string, raw: ArrayBuffer, events: EncoderEvent[]): void {
    this.thread.postMessage({ type: 'batch', id, raw, events }, [raw]);
  }

  close(id: string, t: number): void {
    this.thread.postMessage({ type: 'close', id, t });
  }
}

/** The shared encoder thread (started on first use). */
export const castEncoder = new CastEncoderThread();
