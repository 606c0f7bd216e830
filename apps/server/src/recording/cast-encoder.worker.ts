import { writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

import type { FromEncoder, ToEncoder } from './cast-encoder-protocol';
import { CastLineEncoder, reuseOutput } from './cast-line-encoder';

/**
 * The recording thread (started by cast-encoder.ts): encodes the batches of every running
 * recording as asciicast and hashes them. A recording whose store is a file (its `sink` names the
 * fd) is written here, straight from the encoder's memory: no copy, no bytes back to the session
 * thread, no write call there; the others' encoded bytes go back to the session thread, in order.
 */
const port = parentPort;
if (!port) throw new Error('cast-encoder.worker runs as a worker thread (started by cast-encoder.ts)');

type Chunk = Extract<FromEncoder, { type: 'chunk' }>;

interface Recording {
  enc: CastLineEncoder;
  /** the store's answer: 'wait' until the `sink` message, then a file descriptor or 'back' */
  sink: number | 'back' | 'wait';
  /** chunks encoded before the `sink` (bounded: the session thread counts their raw bytes as held) */
  pending: Chunk[];
  /** a write to the file failed: nothing more is written */
  failed: boolean;
}

const recordings = new Map<string, Recording>();

/** Batch buffers this large go back to the session thread to be filled again (no new memory). */
const RETURN_BYTES = 64 * 1024;

function send(m: FromEncoder): void {
  const transfer: ArrayBuffer[] = [];
  if (m.out) transfer.push(m.out);
  if (m.type === 'chunk' && m.raw) transfer.push(m.raw);
  port?.postMessage(m, transfer);
}

/** Writes all of bytes to the file; answers an error message instead of throwing. */
function writeAll(r: Recording, fd: number, bytes: Uint8Array): string | undefined {
  if (r.failed) return undefined;
  try {
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    return undefined;
  } catch (err) {
    r.failed = true;
    return `could not write the recording: ${(err as Error).message}`;
  }
}

/** A chunk encoded before the sink was known, now delivered the sink's way. */
function deliver(r: Recording, c: Chunk): void {
  if (typeof r.sink === 'number' && c.out) {
    const error = writeAll(r, r.sink, new Uint8Array(c.out, 0, c.outBytes));
    reuseOutput(c.out);
    const { out: _out, ...rest } = c;
    send({ ...rest, outBytes: 0, ...(error !== undefined ? { error } : {}) });
  } else send(c);
}

port.on('message', (m: ToEncoder) => {
  if (m.type === 'open') {
    recordings.set(m.id, { enc: new CastLineEncoder(m.maxBytes), sink: 'wait', pending: [], failed: false });
    return;
  }
  const r = recordings.get(m.id);
  if (!r) return;
  if (m.type === 'sink') {
    if (r.sink !== 'wait') return;
    r.sink = m.fd ?? 'back';
    for (const c of r.pending) deliver(r, c);
    r.pending = [];
    return;
  }
  if (m.type === 'batch') {
    for (const buf of m.give ?? []) reuseOutput(buf);
    const back = m.raw.byteLength >= RETURN_BYTES ? { raw: m.raw } : {};
    const raw = new Uint8Array(m.raw);
    if (typeof r.sink === 'number') {
      // written from the encoder's own memory (valid until the next encode)
      const error = writeAll(r, r.sink, r.enc.encode(raw, m.events, false));
      send({
        type: 'chunk',
        id: m.id,
        rawBytes: m.rawBytes,
        outBytes: 0,
        ...back,
        ...(error ? { error } : {}),
      });
      return;
    }
    const out = r.enc.encode(raw, m.events);
    const c: Chunk = {
      type: 'chunk',
      id: m.id,
      rawBytes: m.rawBytes,
      out: out.buffer,
      outBytes: out.byteLength,
      ...back,
    };
    if (r.sink === 'wait') r.pending.push(c);
    else send(c);
    return;
  }
  recordings.delete(m.id);
  // closed before the store answered: everything goes back to be written there
  if (r.sink === 'wait') {
    r.sink = 'back';
    for (const c of r.pending) send(c);
  }
  if (typeof r.sink === 'number') {
    const { out, ...summary } = r.enc.end(m.t, false);
    const error = writeAll(r, r.sink, out);
    send({ type: 'closed', id: m.id, outBytes: 0, ...summary, ...(error ? { error } : {}) });
    return;
  }
  const { out, ...summary } = r.enc.end(m.t);
  send({ type: 'closed', id: m.id, out: out.buffer, outBytes: out.byteLength, ...summary });
});
