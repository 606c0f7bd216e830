import { parentPort } from 'node:worker_threads';

import type { FromEncoder, ToEncoder } from './cast-encoder-protocol';
import { CastLineEncoder } from './cast-line-encoder';

/**
 * The recording thread (started by cast-encoder.ts): encodes the batches of every running
 * recording as asciicast and hashes them, answering the encoded bytes in order per recording.
 */
const port = parentPort;
if (!port) throw new Error('cast-encoder.worker runs as a worker thread (started by cast-encoder.ts)');

const recordings = new Map<string, CastLineEncoder>();

function send(m: FromEncoder): void {
  port?.postMessage(m, [m.out]);
}

port.on('message', (m: ToEncoder) => {
  if (m.type === 'open') {
    recordings.set(m.id, new CastLineEncoder(m.maxBytes));
    return;
  }
  const r = recordings.get(m.id);
  if (!r) return;
  if (m.type === 'batch') {
    const out = r.encode(new Uint8Array(m.raw), m.events);
    send({ type: 'chunk', id: m.id, rawBytes: m.rawBytes, out: out.buffer });
    return;
  }
  recordings.delete(m.id);
  const { out, ...summary } = r.end(m.t);
  send({ type: 'closed', id: m.id, out: out.buffer, ...summary });
});
