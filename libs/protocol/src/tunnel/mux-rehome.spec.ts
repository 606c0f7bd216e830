import { randomBytes } from 'node:crypto';

import { afterEach, describe, expect, it } from 'vitest';

import { CHANNEL, type StreamOpen } from './frames';
import { Mux, type MuxLimits, type MuxStream } from './mux';

/**
 * Re-homing at the mux level: the agent keeps a bounded window of output its server already
 * consumed; after that server is gone, another server takes the stream over and restarts its
 * output from an offset inside the window, stdin going on where the agent's sink left it.
 */

const RETAIN: Partial<MuxLimits> = { retainBytes: 64 * 1024, retainTotalBytes: 96 * 1024 };

/** Joins two muxes with an asynchronous in-memory link; `cut()` drops it for good. */
function link(a: Mux, b: Mux): { cut: () => void } {
  let live = true;
  const deliver = (to: Mux) => (bytes: Uint8Array, payload?: Uint8Array) => {
    setImmediate(() => {
      if (live) to.receive(bytes, payload);
    });
  };
  a.attach({ send: deliver(b), queuedBytes: () => 0 });
  b.attach({ send: deliver(a), queuedBytes: () => 0 });
  return {
    cut: () => {
      live = false;
      a.detach();
      b.detach();
    },
  };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
async function settle(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await tick();
}

const muxes: Mux[] = [];
function mux(
  role: 'server' | 'agent',
  limits: Partial<MuxLimits>,
  onOpen?: (s: MuxStream, o: StreamOpen) => void,
) {
  const m = new Mux(role, { limits, ...(onOpen ? { onOpen } : {}) });
  muxes.push(m);
  return m;
}

afterEach(() => {
  for (const m of muxes.splice(0)) m.dispose();
});

const OPEN = {
  sessionId: 's-1',
  namespace: 'ns',
  pod: 'p',
  container: 'c',
  command: ['sh'],
  tty: true,
  stdin: true,
};

/** An agent with one open stream from server B, `out` written to stdout and consumed by B. */
async function setUp(out: Buffer, limits: Partial<MuxLimits> = RETAIN) {
  const agentStreams: MuxStream[] = [];
  const stdin: Buffer[] = [];
  const agent = mux('agent', limits, (s) => {
    agentStreams.push(s);
    s.handlers = {
      onData: (_ch, b) => {
        stdin.push(Buffer.from(b));
        s.consumed(CHANNEL.stdin, b.length);
      },
    };
  });
  const b = mux('server', {});
  const toB = link(b, agent);
  const atB: Buffer[] = [];
  const sb = b.open(OPEN, {
    onData: (_ch, bytes) => {
      atB.push(Buffer.from(bytes));
      sb.consumed(CHANNEL.stdout, bytes.length);
    },
  });
  await settle();
  const sa = agentStreams[0];
  if (!sa) throw new Error('the agent got no stream');
  for (let off = 0; off < out.length; off += 8192) sa.write(CHANNEL.stdout, out.subarray(off, off + 8192));
  sb.write(CHANNEL.stdin, Buffer.from('abc'));
  await settle(200);
  return { agent, b, toB, sa, sb, atB, stdin };
}

describe('re-homing a stream to another server', () => {
  it('the agent keeps the last retainBytes of consumed output and reports the window', async () => {
    const out = randomBytes(200 * 1024);
    const { agent, sa, atB } = await setUp(out);
    expect(Buffer.concat(atB).equals(out)).toBe(true);
    const [st] = agent.resumeState();
    expect(st?.outTo).toBe(out.length);
    // Consumed output kept: at most retainBytes (whole frames); the window reported also holds
    // what B has not acknowledged yet (at most one credit window).
    expect(agent.retained).toBeLessThanOrEqual(64 * 1024);
    expect(agent.retained).toBeGreaterThan(32 * 1024);
    const window = out.length - (st?.outFrom ?? 0);
    expect(window).toBeGreaterThanOrEqual(agent.retained);
    expect(window).toBeLessThanOrEqual(agent.retained + 256 * 1024);
    expect(st?.inConsumed).toBe(3);
    sa.reset(8, 'done');
    expect(agent.retained).toBe(0);
  });

  it('the total over all streams is bounded: past it a stream keeps less', async () => {
    const agentStreams: MuxStream[] = [];
    const agent = mux('agent', RETAIN, (s) => {
      agentStreams.push(s);
    });
    const b = mux('server', {});
    link(b, agent);
    const opened = [0, 1].map((i) =>
      b.open(
        { ...OPEN, sessionId: `s-${i}` },
        {
          onData: (_ch, bytes) => {
            opened[i]?.consumed(CHANNEL.stdout, bytes.length);
          },
        },
      ),
    );
    await settle();
    for (const s of agentStreams) for (let k = 0; k < 25; k++) s.write(CHANNEL.stdout, randomBytes(8 * 1024));
    await settle(200);
    // Each stream alone would keep 64 KiB; together they keep at most 96 KiB.
    expect(agent.retained).toBeGreaterThan(64 * 1024);
    expect(agent.retained).toBeLessThanOrEqual(96 * 1024);
  });

  it('a new server takes the orphan over: output again from any offset in the window, exact; stdin goes on', async () => {
    const out = randomBytes(150 * 1024);
    const { agent, toB, sa, stdin } = await setUp(out);
    toB.cut();
    // Server C: knows nothing of the stream; the agent keeps it as an orphan.
    const c = mux('server', {});
    link(c, agent);
    const mine = agent.resumeState();
    const { orphaned, lost } = agent.applyResume(c.resumeState(), { keepUnknown: true });
    expect(orphaned).toEqual([sa.id]);
    expect(lost).toEqual([]);
    expect(sa.orphaned).toBe(true);
    // Output while orphaned waits, silent (C would answer a frame of an unknown stream with a reset).
    const early = Buffer.from('written while orphaned');
    sa.write(CHANNEL.stdout, early);
    await settle(50);
    expect(sa.closed).toBe(false);
    const peer = mine[0];
    if (!peer?.outFrom) throw new Error('no window');
    // The browser had 20 000 bytes less than B had: C restarts 20 000 bytes back.
    const from = out.length - 20_000;
    expect(from).toBeGreaterThanOrEqual(peer.outFrom);
    const atC: Buffer[] = [];
    const sc = c.adoptStream(peer, from, {
      onData: (_ch, bytes) => {
        atC.push(Buffer.from(bytes));
        sc.consumed(CHANNEL.stdout, bytes.length);
      },
    });
    expect(agent.adoptOrphan(sa.id, 's-1', from)).toBeUndefined();
    expect(sa.orphaned).toBe(false);
    const more = randomBytes(100 * 1024);
    sa.write(CHANNEL.stdout, more);
    sc.write(CHANNEL.stdin, Buffer.from('def'));
    await settle(300);
    expect(Buffer.concat(atC).equals(Buffer.concat([out.subarray(from), early, more]))).toBe(true);
    expect(Buffer.concat(stdin).toString()).toBe('abcdef');
    // Ids C opens later stay clear of the adopted one.
    const next = c.open({ ...OPEN, sessionId: 's-2' }, {});
    expect(next.id).toBeGreaterThan(sc.id);
  });

  it('an offset the agent no longer keeps is refused and the stream reset; an unknown stream is refused', async () => {
    const out = randomBytes(200 * 1024);
    const { agent, toB, sa } = await setUp(out);
    toB.cut();
    const c = mux('server', {});
    link(c, agent);
    agent.applyResume([], { keepUnknown: true });
    expect(agent.adoptOrphan(99, 's-1', 0)).toBe('no such stream');
    expect(agent.adoptOrphan(sa.id, 'other', 0)).toBe('no such stream');
    expect(agent.adoptOrphan(sa.id, 's-1', 0)).toMatch(/no longer kept/);
    expect(sa.closed).toBe(true);
  });

  it('without keepUnknown (a server that adopts nothing) unknown streams are reset as before', async () => {
    const { agent, toB, sa } = await setUp(randomBytes(1024));
    toB.cut();
    const c = mux('server', {});
    link(c, agent);
    const r = agent.applyResume([]);
    expect(r.lost).toEqual([sa.id]);
    expect(sa.closed).toBe(true);
  });

  it('nothing is kept with retention off (the default); the window is not reported', async () => {
    const { agent } = await setUp(randomBytes(50 * 1024), {});
    expect(agent.retained).toBe(0);
    expect(agent.resumeState()[0]?.outFrom).toBeUndefined();
  });

  it('a stream that sent stderr reports no window (its offsets are not one byte stream)', async () => {
    const { agent, sa } = await setUp(randomBytes(1024));
    sa.write(CHANNEL.stderr, Buffer.from('oops'));
    await settle(50);
    expect(agent.resumeState()[0]?.outFrom).toBeUndefined();
    expect(() => {
      sa.restartFrom(1024);
    }).toThrow(/stderr/);
  });
});
