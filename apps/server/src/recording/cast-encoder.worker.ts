import { parentPort } from 'node:worker_threads';

import type { FromEncoder, ToEncoder } from './cast-encoder-protocol';
import { CastLineEncoder, reuseOutput } from './cast-line-encoder';

/**
 * The recording thread (started by cast-encoder.ts): encodes the batches of every running
 * recording as asciicast and hashes them, answering the encoded bytes in order per recording.
 */
const port = parentPort;
if (!port) throw new Error('cast-encoder.worker runs as a worker thread (started by cast-encoder.ts)');

const recordings = new Map<string, CastLineEncoder>();

/** Batch buffers this large go back to the session thread to be filled again (no new memory). */
const RETURN_BYTES = 64 * 1024;

function send(m: FromEncoder): void {
  port?.postMessage(m, m.type === 'chunk' && m.raw ? [m.out, m.raw] : [m.out]);
}

port.on('message', (m: ToEncoder) => {
  if (m.type === 'open') {
    recordings.set(m.id, new CastLineEncoder(m.maxBytes));
    return;
  }
  const r = recordings.get(m.id);
  if (!r) return;
  if (m.type === 'batch') {
    for (const buf of m.give ?? []) reuseOutput(buf);
    const out = r.encode(new Uint8Array(m.raw), m.events);
    const back = m.raw.byteLength >= RETURN_BYTES ? { raw: m.raw } : {};
    send({
      type: 'chunk',
      id: m.id,
      rawBytes: m.rawBytes,
      out: out.buffer,
      outBytes: out.byteLength,
      ...back,
    });
    return;
  }
  recordings.delete(m.id);
  const { out, ...summary } = r.end(m.t);
  send({ type: 'closed', id: m.id, out: out.buffer, outBytes: out.byteLength, ...summary });
});
