import { createHash, randomBytes } from 'node:crypto';

import { afterEach, describe, expect, it } from 'vitest';

import { CHANNEL, FRAME, RESET_CODE, encodeFrame, type Channel, type StreamOpen } from './frames';
import { Mux, type MuxEvent, type MuxLimits, type MuxStream } from './mux';

/** Two muxes joined by an in-memory link that delivers asynchronously and can be cut. */
class Pair {
  readonly server: Mux;
  readonly agent: Mux;
  readonly events: MuxEvent[] = [];
  opened: { stream: MuxStream; open: StreamOpen }[] = [];
  private inFlight = 0;
  cut = false;
  framesToAgent: number[] = [];
  /** DATA frames that travelled as header + payload */
  splitFrames = 0;

  constructor(
    limits: Partial<MuxLimits> = {},
    private readonly split: { server?: boolean; agent?: boolean } = {},
  ) {
    this.server = new Mux('server', { limits, onEvent: (e) => this.events.push(e) });
    this.agent = new Mux('agent', {
      limits,
      onEvent: (e) => this.events.push(e),
      onOpen: (stream, open) => {
        this.opened.push({ stream, open });
      },
    });
    this.connect();
  }

  connect(): void {
    this.cut = false;
    const generation = {};
    this.gen = generation;
    const deliver = (to: Mux, bytes: Uint8Array, payload: Uint8Array | undefined): void => {
      const size = bytes.length + (payload?.length ?? 0);
      this.inFlight += size;
      if (to === this.agent) this.framesToAgent.push(bytes[0]!);
      if (payload !== undefined) this.splitFrames++;
      setImmediate(() => {
        this.inFlight -= size;
        if (!this.cut && this.gen === generation) to.receive(bytes, payload);
      });
    };
    this.server.attach({
      send: (b, payload) => {
        deliver(this.agent, b, payload);
      },
      splitData: this.split.server === true,
      queuedBytes: () => this.inFlight,
    });
    this.agent.attach({
      send: (b, payload) => {
        deliver(this.server, b, payload);
      },
      splitData: this.split.agent === true,
      queuedBytes: () => this.inFlight,
    });
  }

  private gen: object = {};

  disconnect(): void {
    this.cut = true;
    this.server.detach();
    this.agent.detach();
  }

  reconnect(): void {
    this.connect();
    const serverState = this.server.resumeState();
    const agentState = this.agent.resumeState();
    this.agent.applyResume(serverState);
    this.server.applyResume(agentState);
  }

  dispose(): void {
    this.server.dispose();
    this.agent.dispose();
  }
}

const OPEN = {
  sessionId: 's-1',
  namespace: 'ns',
  pod: 'p',
  container: 'c',
  command: ['sh'],
  tty: false,
  stdin: true,
};
const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await tick(1);
  }
}

/** Agent side writes `total` random bytes to stdout honouring backpressure. */
function produce(
  stream: MuxStream,
  total: number,
  chunk = 50_000,
  channel: Channel = CHANNEL.stdout,
): { sha: string; done: Promise<void> } {
  const data = randomBytes(total);
  const sha = createHash('sha256').update(data).digest('hex');
  let at = 0;
  const done = new Promise<void>((resolve) => {
    const go = (): void => {
      while (at < total) {
        const piece = data.subarray(at, Math.min(total, at + chunk));
        at += piece.length;
        if (!stream.write(channel, piece)) {
          stream.handlers.onWritable = go;
          return;
        }
      }
      resolve();
    };
    go();
  });
  return { sha, done };
}

/** Opens a server-side stream that hashes and consumes everything it receives. */
function openSink(
  pair: Pair,
  onlyChannel?: Channel,
): { stream: MuxStream; received: () => number; digest: () => string } {
  const hash = createHash('sha256');
  let received = 0;
  const stream = pair.server.open(OPEN, {
    onData: (ch, bytes) => {
      if (onlyChannel !== undefined) expect(ch).toBe(onlyChannel);
      hash.update(bytes);
      received += bytes.length;
      stream.consumed(ch, bytes.length);
    },
  });
  return { stream, received: () => received, digest: () => hash.digest('hex') };
}

describe('Mux', () => {
  let pair: Pair;
  afterEach(() => {
    pair.dispose();
  });

  it('carries a large stream with credit and identical bytes', async () => {
    pair = new Pair({ window: 64 * 1024 });
    const sink = openSink(pair, CHANNEL.stdout);
    await until(() => pair.opened.length === 1, 'open');
    expect(pair.opened[0]!.open).toMatchObject({ ...OPEN, window: 64 * 1024 });
    const { sha, done } = produce(pair.opened[0]!.stream, 5 * 1024 * 1024);
    await done;
    await until(() => sink.received() === 5 * 1024 * 1024, 'all bytes');
    expect(sink.digest()).toBe(sha);
  });

  it('never lets more than one window be in flight when the consumer stalls, and pushes back on the writer', async () => {
    pair = new Pair({ window: 32 * 1024 });
    let received = 0;
    pair.server.open(OPEN, { onData: (_c, b) => (received += b.length) }); // never consumes
    await until(() => pair.opened.length === 1, 'open');
    const agentSide = pair.opened[0]!.stream;
    const accepted = agentSide.write(CHANNEL.stdout, new Uint8Array(100 * 1024));
    expect(accepted).toBe(false);
    await tick(20);
    expect(received).toBe(32 * 1024);
    expect(agentSide.pendingBytes()).toBe(100 * 1024 - 32 * 1024);
  });

  it('keeps a typing stream responsive while another floods', async () => {
    pair = new Pair({ window: 256 * 1024, linkCap: 64 * 1024 });
    let bulk = 0;
    const flood = pair.server.open(
      { ...OPEN, sessionId: 'flood' },
      {
        onData: (c, b) => {
          bulk += b.length;
          flood.consumed(c, b.length);
        },
      },
    );
    const echoes: number[] = [];
    pair.server.open({ ...OPEN, sessionId: 'typing' }, { onData: () => echoes.push(Date.now()) });
    await until(() => pair.opened.length === 2, 'open');
    const floodAgent = pair.opened.find((o) => o.open.sessionId === 'flood')!.stream;
    const typingAgent = pair.opened.find((o) => o.open.sessionId === 'typing')!.stream;
    const { done } = produce(floodAgent, 8 * 1024 * 1024);
    await until(() => bulk > 1024 * 1024, 'flood running');
    const sentAt = Date.now();
    typingAgent.write(CHANNEL.stdout, new TextEncoder().encode('x'));
    await until(() => echoes.length === 1, 'keystroke');
    expect(bulk).toBeLessThan(8 * 1024 * 1024); // the keystroke did not wait for the flood
    expect(echoes[0]! - sentAt).toBeLessThan(100);
    await done;
  });

  it('sends a keystroke at once, ahead of the bulk frames other streams have queued', async () => {
    pair = new Pair({ window: 256 * 1024, linkCap: 64 * 1024 });
    const flood = pair.server.open({ ...OPEN, sessionId: 'flood' }, {});
    const typing = pair.server.open({ ...OPEN, sessionId: 'typing' }, {});
    await until(() => pair.opened.length === 2, 'open');
    pair.framesToAgent = [];
    const sizes: number[] = [];
    const link = (pair.server as unknown as { link: { send: (b: Uint8Array, p?: Uint8Array) => void } }).link;
    const send = link.send;
    link.send = (b, p) => {
      sizes.push(p?.length ?? b.length);
      send(b, p);
    };
    // 200 KiB of stdin queued on one stream (not yet pumped: the pump runs in a microtask) …
    flood.write(CHANNEL.stdin, new Uint8Array(200 * 1024));
    expect(sizes).toEqual([]);
    // … and a keystroke on another goes out synchronously, before any of it.
    typing.write(CHANNEL.stdin, new Uint8Array([120]));
    expect(sizes.length).toBe(1);
    expect(sizes[0]! < 64).toBe(true);
    await tick(5);
    // the bulk followed (one window's worth and the link cap allowing), the keystroke stayed first
    expect(sizes.length).toBeGreaterThan(1);
    expect(sizes.slice(1).every((n) => n > 1000)).toBe(true);
  });

  it('sends a keystroke that waited (tunnel away) before the bulk queued meanwhile', async () => {
    pair = new Pair({ window: 256 * 1024, linkCap: 1024 * 1024 });
    const flood = pair.server.open({ ...OPEN, sessionId: 'flood' }, {});
    const typing = pair.server.open({ ...OPEN, sessionId: 'typing' }, {});
    await until(() => pair.opened.length === 2, 'open');
    pair.disconnect();
    flood.write(CHANNEL.stdin, new Uint8Array(200 * 1024));
    typing.write(CHANNEL.stdin, new Uint8Array([120]));
    pair.reconnect();
    // The resumed link; the pump runs in a microtask after this.
    const order: string[] = [];
    const link = (pair.server as unknown as { link: { send: (b: Uint8Array, p?: Uint8Array) => void } }).link;
    const send = link.send;
    link.send = (b, p) => {
      const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
      if (b[0] === FRAME.data) order.push(view.getUint32(1) === typing.id ? 'typing' : 'flood');
      send(b, p);
    };
    await until(() => order.length >= 3, 'frames after the resume');
    // flood came first in the round-robin order; the keystroke still went ahead of it
    expect(order[0]).toBe('typing');
    expect(order.slice(1).every((o) => o === 'flood')).toBe(true);
  });

  it('resets only the stream that violates credit', async () => {
    pair = new Pair({ window: 1024 });
    const closed: number[] = [];
    const a = pair.server.open({ ...OPEN, sessionId: 'a' }, { onClose: (code) => closed.push(code) });
    pair.server.open({ ...OPEN, sessionId: 'b' }, {});
    await until(() => pair.opened.length === 2, 'open');
    pair.server.receive(
      encodeFrame({
        type: FRAME.data,
        streamId: a.id,
        channel: CHANNEL.stdout,
        offset: 0,
        payload: new Uint8Array(2048),
      }),
    );
    expect(closed).toEqual([RESET_CODE.creditViolation]);
    expect(pair.server.size).toBe(1);
  });

  it('carries DATA as header + payload where the link agreed to it, whole frames elsewhere', async () => {
    // The agent sends split frames (its peer offered them), the server whole ones (as to an old agent).
    pair = new Pair({ window: 64 * 1024 }, { agent: true });
    const sink = openSink(pair);
    const s = sink.stream;
    await until(() => pair.opened.length === 1, 'open');
    const agentSide = pair.opened[0]!.stream;
    const stdin = createHash('sha256');
    let stdinBytes = 0;
    agentSide.handlers.onData = (ch, bytes) => {
      expect(ch).toBe(CHANNEL.stdin);
      stdin.update(bytes);
      stdinBytes += bytes.length;
      agentSide.consumed(ch, bytes.length);
    };
    const input = produce(s, 300_000, 20_000, CHANNEL.stdin);
    const { sha, done } = produce(agentSide, 2 * 1024 * 1024);
    await Promise.all([done, input.done]);
    await until(() => sink.received() === 2 * 1024 * 1024 && stdinBytes === 300_000, 'both directions');
    expect(sink.digest()).toBe(sha);
    expect(stdin.digest('hex')).toBe(input.sha);
    // stdout went as split frames (≥ 32 of them), stdin as whole DATA frames
    expect(pair.splitFrames).toBeGreaterThanOrEqual(32);
    expect(pair.framesToAgent.filter((t) => t === FRAME.data).length).toBeGreaterThan(0);
  });

  it.each([
    ['whole frames', {}],
    ['split DATA frames', { server: true, agent: true }],
  ])('resumes after a cut with no byte lost or repeated (%s)', async (_mode, split) => {
    pair = new Pair({ window: 64 * 1024 }, split);
    const sink = openSink(pair);
    await until(() => pair.opened.length === 1, 'open');
    const total = 3 * 1024 * 1024;
    const { sha, done } = produce(pair.opened[0]!.stream, total);
    await until(() => sink.received() > 500_000, 'some bytes');
    pair.disconnect();
    await tick(20);
    const before = sink.received();
    pair.reconnect();
    await done;
    await until(() => sink.received() === total, 'all bytes after resume');
    expect(before).toBeLessThan(total);
    expect(sink.digest()).toBe(sha);
  });

  it('delivers stdin, half-close, resize and exit in order and frees both sides', async () => {
    pair = new Pair();
    const events: string[] = [];
    const s = pair.server.open(OPEN, {
      onData: (c, b) => {
        events.push(`out:${new TextDecoder().decode(b)}`);
        s.consumed(c, b.length);
      },
      onExit: (e) => events.push(`exit:${e.exitCode}`),
    });
    await until(() => pair.opened.length === 1, 'open');
    const agentSide = pair.opened[0]!.stream;
    agentSide.handlers = {
      onData: (c, b) => {
        events.push(`in:${new TextDecoder().decode(b)}`);
        agentSide.consumed(c, b.length);
      },
      onHalfClose: (c) => events.push(`eof:${c}`),
      onResize: (cols, rows) => events.push(`size:${cols}x${rows}`),
    };
    s.write(CHANNEL.stdin, new TextEncoder().encode('ls\n'));
    s.resize(100, 30);
    s.end(CHANNEL.stdin);
    await until(() => events.includes('eof:0'), 'eof');
    agentSide.write(CHANNEL.stdout, new TextEncoder().encode('done'));
    agentSide.exit({ exitCode: 3, status: 'Failure' });
    await until(() => pair.agent.size === 0 && pair.server.size === 0, 'freed');
    // Resize is a control frame and may overtake queued data; data, EOF, output and exit keep order.
    expect(events).toContain('size:100x30');
    expect(events.filter((e) => !e.startsWith('size'))).toEqual(['in:ls\n', 'eof:0', 'out:done', 'exit:3']);
  });

  it('resets a slow consumer after the starve limit and keeps other streams', async () => {
    pair = new Pair({ window: 1024, starveMs: 200 });
    const closed: string[] = [];
    pair.server.open({ ...OPEN, sessionId: 'stalled' }, {});
    const ok = pair.server.open({ ...OPEN, sessionId: 'fine' }, {});
    await until(() => pair.opened.length === 2, 'open');
    const stalled = pair.opened.find((o) => o.open.sessionId === 'stalled')!.stream;
    stalled.handlers.onClose = (_c, reason) => closed.push(reason);
    stalled.write(CHANNEL.stdout, new Uint8Array(4096));
    await until(() => closed.length === 1, 'slow consumer reset', 3000);
    expect(closed[0]).toMatch(/no credit/);
    expect(pair.server.stream(ok.id)).toBeDefined();
  });

  it('lets stdin wait for a process that does not read: no slow-consumer reset, writer paused, then all of it', async () => {
    pair = new Pair({ window: 1024, starveMs: 200 });
    const closed: string[] = [];
    const s = pair.server.open(OPEN, { onClose: (_c, reason) => closed.push(reason) });
    let writable = 0;
    s.handlers.onWritable = () => writable++;
    await until(() => pair.opened.length === 1, 'open');
    const agentSide = pair.opened[0]!.stream;
    const got: Uint8Array[] = [];
    let reading = false;
    agentSide.handlers.onData = (_ch, b) => {
      got.push(b);
      if (reading) agentSide.consumed(CHANNEL.stdin, b.length);
    };
    const data = randomBytes(3000);
    // One window goes out, the rest waits here; the writer is told to pause.
    expect(s.write(CHANNEL.stdin, data.subarray(0, 1000))).toBe(true);
    expect(s.write(CHANNEL.stdin, data.subarray(1000))).toBe(false);
    await tick(600); // three starve limits
    expect(closed).toEqual([]);
    expect(pair.server.stream(s.id)).toBeDefined();
    expect(writable).toBe(0);
    reading = true;
    agentSide.consumed(
      CHANNEL.stdin,
      got.reduce((n, b) => n + b.length, 0),
    );
    await until(() => got.reduce((n, b) => n + b.length, 0) === 3000, 'all stdin');
    expect(writable).toBe(1);
    expect(Buffer.concat(got).equals(data)).toBe(true);
  });

  it('drops malformed frames and answers frames for unknown streams with a reset', async () => {
    pair = new Pair();
    pair.agent.receive(new Uint8Array([42, 0, 0, 0, 9]));
    expect(pair.events.some((e) => e.event === 'frame_rejected')).toBe(true);
    pair.framesToAgent = [];
    pair.agent.receive(
      encodeFrame({ type: FRAME.data, streamId: 77, channel: 0, offset: 0, payload: new Uint8Array(1) }),
    );
    await tick(5);
    // the agent answered the server with a reset; nothing was opened
    expect(pair.opened).toHaveLength(0);
  });

  it('refuses opens beyond the stream limit', () => {
    pair = new Pair({ maxStreams: 1 });
    pair.server.open(OPEN, {});
    expect(() => pair.server.open({ ...OPEN, sessionId: 's-2' }, {})).toThrow(/limit/);
  });
});
