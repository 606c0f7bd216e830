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
  /** the same file opened with O_DIRECT: the aligned part of each write goes through it */
  direct: number | undefined;
  /** bytes of the file written so far (every write is positional) */
  pos: number;
  /** encoded and hashed bytes not written yet: a direct write's unaligned tail (< DIRECT_ALIGN after a batch) */
  carry: Uint8Array | undefined;
  /** chunks encoded before the `sink` (bounded: the session thread counts their raw bytes as held) */
  pending: Chunk[];
  /** a write to the file failed: nothing more is written */
  failed: boolean;
  /** the batch memory shared with the session thread, slots of slotBytes */
  slots: SharedArrayBuffer | undefined;
  slotBytes: number;
}

/**
 * O_DIRECT writes need the memory, the file offset and the length aligned to the device's logical
 * block; 4096 covers 512-byte and 4 KiB devices. The encoder's output memory is page-aligned
 * (WebAssembly memory); where it is not (the JavaScript fallback) the first direct write fails
 * and the recording goes on through the ordinary descriptor.
 */
const DIRECT_ALIGN = 4096;

const recordings = new Map<string, Recording>();

function send(m: FromEncoder): void {
  const transfer: ArrayBuffer[] = [];
  if (m.out) transfer.push(m.out);
  port?.postMessage(m, transfer);
}

/** Writes bytes[from, to) at the file's position r.pos, advancing it. */
function writeAt(r: Recording, fd: number, bytes: Uint8Array, from: number, to: number): void {
  for (let off = from; off < to;) {
    const n = writeSync(fd, bytes, off, to - off, r.pos);
    off += n;
    r.pos += n;
  }
}

/**
 * Appends bytes (a carried-over tail first, when the encoder put one in front of them) to the
 * file; answers an error message instead of throwing. With a direct descriptor the aligned part
 * goes through it and the rest is carried over to the next write (`last`: everything is written,
 * through the ordinary descriptor); a failed direct write leaves it for the ordinary descriptor.
 */
function append(r: Recording, fd: number, bytes: Uint8Array, last: boolean): string | undefined {
  if (r.failed) return undefined;
  r.carry = undefined;
  let from = 0;
  if (r.direct !== undefined) {
    const aligned = last ? 0 : bytes.length - (bytes.length % DIRECT_ALIGN);
    const start = r.pos;
    try {
      writeAt(r, r.direct, bytes, 0, aligned);
      if (!last) {
        // kept (copied: the encoder's memory is reused) for the front of the next write
        if (aligned < bytes.length) r.carry = bytes.slice(aligned);
        return undefined;
      }
    } catch {
      // refused (alignment, a filesystem without O_DIRECT): the rest goes through fd
      r.direct = undefined;
      from = r.pos - start;
    }
  }
  try {
    writeAt(r, fd, bytes, from, bytes.length);
    return undefined;
  } catch (err) {
    r.failed = true;
    return `could not write the recording: ${(err as Error).message}`;
  }
}

/** A chunk encoded before the sink was known, now delivered the sink's way. */
function deliver(r: Recording, c: Chunk): void {
  if (typeof r.sink === 'number' && c.out) {
    // written in front of the next batch's bytes (so that direct writes stay aligned), or now
    const bytes = new Uint8Array(c.out, 0, c.outBytes);
    let error: string | undefined;
    if (r.direct !== undefined) r.carry = r.carry ? Buffer.concat([r.carry, bytes]) : bytes.slice();
    else error = append(r, r.sink, bytes, false);
    reuseOutput(c.out);
    const { out: _out, ...rest } = c;
    send({ ...rest, outBytes: 0, ...(error !== undefined ? { error } : {}) });
  } else send(c);
}

port.on('message', (m: ToEncoder) => {
  if (m.type === 'open') {
    recordings.set(m.id, {
      enc: new CastLineEncoder(m.maxBytes),
      sink: 'wait',
      direct: undefined,
      pos: 0,
      carry: undefined,
      pending: [],
      failed: false,
      slots: m.slots,
      slotBytes: m.slotBytes ?? 0,
    });
    return;
  }
  const r = recordings.get(m.id);
  if (!r) return;
  if (m.type === 'sink') {
    if (r.sink !== 'wait') return;
    r.sink = m.fd ?? 'back';
    r.direct = m.fd !== undefined ? m.directFd : undefined;
    for (const c of r.pending) deliver(r, c);
    r.pending = [];
    return;
  }
  if (m.type === 'batch') {
    for (const buf of m.give ?? []) reuseOutput(buf);
    // the slot is the session thread's again once this batch is encoded (its bytes copied or written)
    const back = m.slot !== undefined ? { slot: m.slot } : {};
    const raw =
      m.slot !== undefined && r.slots
        ? new Uint8Array(r.slots, m.slot * r.slotBytes, m.rawBytes)
        : new Uint8Array(m.raw ?? new ArrayBuffer(0));
    if (typeof r.sink === 'number') {
      // written from the encoder's own memory (valid until the next encode), after the carried tail
      const error = append(r, r.sink, r.enc.encode(raw, m.events, false, r.carry), false);
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
    const { out, ...summary } = r.enc.end(m.t, false, r.carry);
    const error = append(r, r.sink, out, true);
    send({ type: 'closed', id: m.id, outBytes: 0, ...summary, ...(error ? { error } : {}) });
    return;
  }
  const { out, ...summary } = r.enc.end(m.t);
  send({ type: 'closed', id: m.id, out: out.buffer, outBytes: out.byteLength, ...summary });
});
