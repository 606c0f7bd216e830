/**
 * `npm run bench:tunnel`: the agent tunnel and a raw WebSocket side by side in one run, both over
 * TLS on loopback, both ends in this process. Prints a table and writes JSON to
 * e2e/bench/results/. Measures keystroke round trips (idle and while a bulk stream saturates the
 * same connection), bulk throughput (client → server, the direction exec output flows from the
 * agent), and memory growth while a consumer stalls.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

import { CHANNEL, RESET_CODE } from '@periscope/protocol';
import { WebSocket, WebSocketServer } from 'ws';

import type { AgentLink } from '../../apps/server/src/tunnel/agent-link';
import { startHarness } from '../tunnel/tunnel-fixture';

const SAMPLES = Number(process.env['BENCH_SAMPLES'] ?? 200);
const BULK_MIB = Number(process.env['BENCH_BULK_MIB'] ?? 1024);

function pct(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const rssMiB = (): number => process.memoryUsage().rss / 1024 / 1024;

// ---------------------------------------------------------------- raw WebSocket (baseline)
async function rawWs(certPem: string, keyPem: string, caPem: string) {
  const https = createServer({ cert: certPem, key: keyPem });
  const wss = new WebSocketServer({ server: https, perMessageDeflate: false });
  let bulkOn = false;
  let stalledSink: WebSocket | undefined;
  wss.on('connection', (ws) => {
    ws.on('message', (data: Buffer) => {
      const cmd = data.toString();
      if (cmd === 'k')
        ws.send(data); // keystroke echo
      else if (cmd === 'bulk') {
        bulkOn = true;
        const chunk = Buffer.alloc(32 * 1024, 7);
        const pump = (): void => {
          // a typical naive sender: keep up to 4 MiB queued in the socket
          while (bulkOn && ws.bufferedAmount < 4 * 1024 * 1024) ws.send(chunk);
          if (bulkOn) setTimeout(pump, 1);
        };
        pump();
      } else if (cmd === 'stop') bulkOn = false;
      else if (cmd.startsWith('flood:')) {
        let left = Number(cmd.slice(6));
        const chunk = Buffer.alloc(64 * 1024, 9);
        const pump = (): void => {
          while (left > 0 && ws.bufferedAmount < 4 * 1024 * 1024) {
            ws.send(chunk);
            left -= chunk.length;
          }
          if (left > 0) setTimeout(pump, 1);
        };
        pump();
      } else if (cmd.startsWith('upload:')) {
        // client → server bulk, the direction exec output takes (the agent is the WebSocket client)
        let left = Number(cmd.slice(7));
        ws.removeAllListeners('message');
        ws.on('message', (d: Buffer) => {
          left -= d.length;
          if (left <= 0) ws.send('done');
        });
      } else if (cmd === 'stall-flood') {
        stalledSink = ws;
        const chunk = Buffer.alloc(64 * 1024, 5);
        // a sender without flow control writes regardless of the reader
        for (let i = 0; i < 256; i++) ws.send(chunk);
      }
    });
  });
  await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
  const port = (https.address() as AddressInfo).port;
  const open = async (): Promise<WebSocket> => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}`, { ca: caPem, perMessageDeflate: false });
    await new Promise((r) => ws.once('open', r));
    return ws;
  };
  return {
    open,
    close: async () => {
      stalledSink?.terminate();
      for (const c of wss.clients) c.terminate();
      await new Promise((r) => https.close(r));
    },
  };
}

async function rawKeystrokes(open: () => Promise<WebSocket>, underBulk: boolean): Promise<number[]> {
  const ws = await open();
  let waiting: (() => void) | undefined;
  ws.on('message', (d: Buffer) => {
    if (d.length === 1) waiting?.();
  });
  if (underBulk) {
    ws.send('bulk');
    await sleep(300);
  }
  const rtts: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const t = performance.now();
    await new Promise<void>((resolve) => {
      waiting = resolve;
      ws.send('k');
    });
    rtts.push(performance.now() - t);
    await sleep(10);
  }
  ws.send('stop');
  ws.close();
  return rtts;
}

async function rawBulk(open: () => Promise<WebSocket>, bytes: number): Promise<number> {
  const ws = await open();
  const t = performance.now();
  await new Promise<void>((resolve) => {
    ws.on('message', () => {
      resolve();
    });
    ws.send(`upload:${bytes}`);
    const chunk = Buffer.alloc(64 * 1024, 9);
    let sent = 0;
    const pump = (): void => {
      while (sent < bytes && ws.bufferedAmount < 4 * 1024 * 1024) {
        ws.send(chunk);
        sent += chunk.length;
      }
      if (sent < bytes) setTimeout(pump, 1);
    };
    pump();
  });
  const s = (performance.now() - t) / 1000;
  ws.close();
  return bytes / 1024 / 1024 / s;
}

// ---------------------------------------------------------------- the tunnel
function tunnelStream(link: AgentLink, sessionId: string, command: string[], consume = true) {
  const state = { bytes: 0, onByte: undefined as (() => void) | undefined, exited: false };
  const stream = link.mux.open(
    { sessionId, namespace: 'b', pod: 'b', container: 'b', command, tty: false, stdin: true },
    {
      onData: (ch, b) => {
        state.bytes += b.length;
        if (consume) stream.consumed(ch, b.length);
        state.onByte?.();
      },
      onExit: () => {
        state.exited = true;
      },
    },
  );
  return { stream, state };
}

async function tunnelKeystrokes(link: AgentLink, underBulk: boolean): Promise<number[]> {
  const bulk = underBulk
    ? tunnelStream(link, `bulk-${Date.now()}`, ['zeros', String(64 * 1024 * 1024 * 1024)])
    : undefined;
  if (bulk) await sleep(300);
  const { stream, state } = tunnelStream(link, `keys-${Date.now()}`, ['echo']);
  const rtts: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const t = performance.now();
    await new Promise<void>((resolve) => {
      state.onByte = resolve;
      stream.write(CHANNEL.stdin, Buffer.from('k'));
    });
    rtts.push(performance.now() - t);
    await sleep(10);
  }
  stream.reset(RESET_CODE.closedByPeer, 'bench done');
  bulk?.stream.reset(RESET_CODE.closedByPeer, 'bench done');
  return rtts;
}

async function tunnelBulk(link: AgentLink, bytes: number): Promise<number> {
  const t = performance.now();
  const { state } = tunnelStream(link, `bulk-${Date.now()}`, ['zeros', String(bytes)]);
  while (!state.exited) await sleep(5);
  return bytes / 1024 / 1024 / ((performance.now() - t) / 1000);
}

async function main(): Promise<void> {
  const linkCap = process.env['BENCH_LINK_CAP'];
  const window = process.env['BENCH_WINDOW'];
  const h = await startHarness({
    ...(linkCap !== undefined ? { linkCap: Number(linkCap) } : {}),
    ...(window !== undefined ? { window: Number(window) } : {}),
  });
  await h.agent('edge-1');
  let link: AgentLink | undefined;
  while (!(link = h.server.link('edge-1'))?.mux.attached) await sleep(20);
  const tls = await h.ca.issueServerCert(['127.0.0.1']);
  const raw = await rawWs(tls.certPem, tls.keyPem, h.ca.certPem);
  const bulkBytes = BULK_MIB * 1024 * 1024;

  const results: Record<string, number> = {};
  const rec = (name: string, v: number): void => {
    results[name] = Math.round(v * 100) / 100;
  };
  for (const [name, rtts] of [
    ['raw_ws.idle', await rawKeystrokes(raw.open, false)],
    ['tunnel.idle', await tunnelKeystrokes(link, false)],
    ['raw_ws.under_bulk', await rawKeystrokes(raw.open, true)],
    ['tunnel.under_bulk', await tunnelKeystrokes(link, true)],
  ] as const) {
    rec(`${name}.p50_ms`, pct(rtts, 50));
    rec(`${name}.p99_ms`, pct(rtts, 99));
  }
  rec('raw_ws.bulk_mib_s', await rawBulk(raw.open, bulkBytes));
  rec('tunnel.bulk_mib_s', await tunnelBulk(link, bulkBytes));

  // Memory while the consumer stalls: the tunnel holds at most one window per stream plus the
  // link cap; a sender without flow control queues everything it writes.
  global.gc?.();
  await sleep(200);
  const base = rssMiB();
  const stalled = tunnelStream(link, `stall-${Date.now()}`, ['zeros', String(1024 * 1024 * 1024)], false);
  await sleep(2000);
  rec('tunnel.stalled_rss_growth_mib', rssMiB() - base);
  rec('tunnel.stalled_bytes_delivered_kib', stalled.state.bytes / 1024);
  stalled.stream.reset(RESET_CODE.closedByPeer, 'bench done');

  await raw.close();
  await h.stop();

  const ratio = (results['tunnel.bulk_mib_s'] ?? 0) / (results['raw_ws.bulk_mib_s'] ?? 1);
  rec('tunnel_vs_raw_bulk_ratio', ratio);
  const rows = [
    [
      'keystroke RTT idle p50 / p99 (ms)',
      `${results['raw_ws.idle.p50_ms']} / ${results['raw_ws.idle.p99_ms']}`,
      `${results['tunnel.idle.p50_ms']} / ${results['tunnel.idle.p99_ms']}`,
    ],
    [
      'keystroke RTT under bulk p50 / p99 (ms)',
      `${results['raw_ws.under_bulk.p50_ms']} / ${results['raw_ws.under_bulk.p99_ms']}`,
      `${results['tunnel.under_bulk.p50_ms']} / ${results['tunnel.under_bulk.p99_ms']}`,
    ],
    [
      `bulk ${BULK_MIB} MiB (MiB/s)`,
      String(results['raw_ws.bulk_mib_s']),
      `${results['tunnel.bulk_mib_s']} (${Math.round(ratio * 100)} % of raw)`,
    ],
    [
      'RSS growth, stalled consumer 2 s (MiB)',
      'n/a (no flow control)',
      `${results['tunnel.stalled_rss_growth_mib']} (delivered ${results['tunnel.stalled_bytes_delivered_kib']} KiB)`,
    ],
  ];
  process.stdout.write(
    `\n| measure | raw ws (TLS) | tunnel (TLS + Socket.IO + mux) |\n|---|---|---|\n${rows.map((r) => `| ${r.join(' | ')} |`).join('\n')}\n\n`,
  );
  const dir = join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `tunnel-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    file,
    JSON.stringify({ node: process.version, samples: SAMPLES, bulkMiB: BULK_MIB, results }, null, 2),
  );
  process.stdout.write(`wrote ${file}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
