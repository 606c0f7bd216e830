import { EventEmitter } from 'node:events';

import type { ExecChannel, ExecChannelHandlers } from '@periscope/cluster-ops';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type WebSocket from 'ws';

import { TerminalSession, type SessionDriver, type SessionEnd, type SessionLimits } from './terminal-session';

/** A WebSocket stand-in that records frames; enough for the session lifecycle logic (unit tests). */
class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  frames: Record<string, unknown>[] = [];
  output: Buffer[] = [];
  pings = 0;
  /** reading paused (stdin flow control): a real socket would stop taking frames */
  isPaused = false;
  closedWith: { code: number; reason: string } | undefined;
  send(data: string | Uint8Array): void {
    if (typeof data === 'string') this.frames.push(JSON.parse(data) as Record<string, unknown>);
    else this.output.push(Buffer.from(data));
  }
  ping(): void {
    this.pings++;
  }
  pause(): void {
    this.isPaused = true;
  }
  resume(): void {
    this.isPaused = false;
  }
  close(code: number, reason: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }
  terminate(): void {
    this.readyState = 3;
    this.emit('close');
  }
  /** the browser going away without a close frame */
  drop(): void {
    this.readyState = 3;
    this.emit('close');
  }
  text(): string {
    return Buffer.concat(this.output).toString();
  }
}

const LIMITS: SessionLimits = {
  idleSeconds: 600,
  idleWarnSeconds: 1,
  heartbeatSeconds: 1,
  maxSessionSeconds: 3600,
  maxWarnSeconds: 0,
  graceSeconds: 0,
  bufferBytes: 64,
};
/**
 * What the session measures time with: `Date.now` and timers (idle check, heartbeat, grace, max
 * length, resize coalescing, drain). Only these are faked; promises, `process.nextTick` and
 * `setImmediate` stay real, so async steps (the exec starting, teardown) settle as in production.
 */
const FAKED: ('setTimeout' | 'clearTimeout' | 'setInterval' | 'clearInterval' | 'Date')[] = [
  'setTimeout',
  'clearTimeout',
  'setInterval',
  'clearInterval',
  'Date',
];
/**
 * Moves the fake clock on by `ms`: every timer due on the way fires in order, with pending promises
 * settled after each one. Deterministic whatever the load on the machine.
 */
const advance = async (ms: number): Promise<void> => {
  await vi.advanceTimersByTimeAsync(ms);
};
const asWs = (s: FakeSocket): WebSocket => s as unknown as WebSocket;

/** A driver whose exec is driven by the test: `emit` output, `exit`, and what the session did. */
function fakeDriver() {
  const calls: string[] = [];
  const ends: SessionEnd[] = [];
  const stdin: string[] = [];
  let handlers: ExecChannelHandlers | undefined;
  let paused = false;
  /** the exec side says it is full (stdin flow control) */
  let full = false;
  const driver: SessionDriver = {
    start: (io) => {
      calls.push('start');
      io.status('ready', 'pod is ready');
      handlers = io.handlers;
      return Promise.resolve({
        protocol: 'v5',
        write: (b) => {
          stdin.push(Buffer.from(b).toString());
          return !full;
        },
        end: () => undefined,
        resize: (c, r) => calls.push(`resize ${c}x${r}`),
        resume: () => {
          paused = false;
          calls.push('resume');
        },
        close: () => calls.push('exec.close'),
      });
    },
    classifyExit: (r) => ({ reason: 'exit', exitCode: r.exitCode }),
    classifyStartError: (err) => ({
      reason: 'provision_failed',
      error: { code: 'E_PROVISION', message: (err as Error).message, retryable: false },
    }),
    finish: (end) => {
      ends.push(end);
      return Promise.resolve();
    },
  };
  return {
    driver,
    calls,
    ends,
    stdin,
    /** output from the exec; answers whether the session accepted more */
    emit: (text: string): boolean => {
      if (paused) throw new Error('output while paused');
      const ok = handlers?.onOutput(1, Buffer.from(text)) ?? false;
      if (!ok) paused = true;
      return ok;
    },
    isPaused: () => paused,
    /** the exec side fills up, or (false) has room again and says so */
    setFull: (v: boolean) => {
      full = v;
      if (!v) handlers?.onWritable?.();
    },
    exit: (exitCode: number) =>
      handlers?.onExit({ exitCode, status: exitCode === 0 ? 'Success' : 'Failure' }),
  };
}

function newSession(limits: Partial<SessionLimits> = {}) {
  const d = fakeDriver();
  const s = new TerminalSession(
    {
      sessionId: '0190f0f0-aaaa-7bbb-8ccc-000000000001',
      kind: 'cluster_shell',
      subject: 'alice',
      tier: 'admin',
      cluster: 'lab',
      mode: 'bash',
      startedAt: new Date(),
    },
    d.driver,
    { ...LIMITS, ...limits },
    pino({ level: 'silent' }),
  );
  return { s, ...d };
}

describe(TerminalSession.name, () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: FAKED });
  });
  afterEach(() => {
    // Drops timers a failed test left (its pong or busy loop, the session's own).
    vi.useRealTimers();
  });

  it('says hello, shows progress, pumps bytes both ways and closes with the exit code, even 0', async () => {
    const { s, calls, ends, stdin, emit, exit } = newSession();
    const ws = new FakeSocket();
    s.start(asWs(ws));
    await advance(10);
    ws.emit('message', Buffer.from(JSON.stringify({ type: 'resize', cols: 120, rows: 40 })), false);
    ws.emit('message', Buffer.from('ls\n'), true);
    emit('file\n');
    await advance(80); // resizes reach the exec at most every 50 ms
    exit(0);
    await advance(10);
    expect(ws.frames[0]).toMatchObject({
      type: 'hello',
      kind: 'cluster_shell',
      cluster: 'lab',
      mode: 'bash',
    });
    expect(ws.frames[1]).toEqual({ type: 'status', phase: 'ready', message: 'pod is ready' });
    expect(ws.frames).toContainEqual({ type: 'closed', reason: 'exit', exitCode: 0 });
    expect(ws.frames.filter((f) => f['type'] === 'closed')).toHaveLength(1);
    expect(stdin).toEqual(['ls\n']);
    expect(ws.text()).toBe('file\n');
    expect(calls).toContain('resize 120x40');
    expect(ends).toEqual([expect.objectContaining({ reason: 'exit', exitCode: 0, bytesIn: 3, bytesOut: 5 })]);
    expect(ws.closedWith).toEqual({ code: 1000, reason: 'exit' });
    expect(s.state).toBe('ended');
  });

  it('answers malformed control frames and keeps going; an explicit close ends at once', async () => {
    const { s, ends } = newSession({ graceSeconds: 60 });
    const ws = new FakeSocket();
    s.start(asWs(ws));
    await advance(10);
    for (const bad of ['{', '{"type":"resize","cols":100000,"rows":5}', '{"type":"signal"}', 'null'])
      ws.emit('message', Buffer.from(bad), false);
    expect(ws.frames.filter((f) => f['code'] === 'E_BAD_FRAME')).toHaveLength(4);
    expect(s.state).toBe('attached');
    ws.emit('message', Buffer.from('{"type":"close"}'), false);
    await advance(10);
    expect(ends.map((e) => e.reason)).toEqual(['client_close']);
  });

  it('warns before the idle cut and cuts once; a resize is not activity', async () => {
    const { s, ends } = newSession({ idleSeconds: 3, idleWarnSeconds: 2 });
    const ws = new FakeSocket();
    const pong = setInterval(() => ws.emit('pong'), 300);
    s.start(asWs(ws));
    await advance(1600);
    expect(ws.frames.some((f) => f['type'] === 'idle_warn')).toBe(true);
    // A tab that fits itself to its window keeps resizing: that is nobody at the keyboard.
    for (let i = 0; i < 5; i++) {
      ws.emit('message', Buffer.from(`{"type":"resize","cols":${80 + i},"rows":24}`), false);
      await advance(200);
    }
    await advance(1000);
    clearInterval(pong);
    expect(ends.map((e) => e.reason)).toEqual(['idle']);
    expect(ws.frames).toContainEqual({ type: 'closed', reason: 'idle' });
    expect(ws.frames.filter((f) => f['type'] === 'idle_warn')).toHaveLength(1);
  });

  it('counts stdin, output and the keep-alive frame as activity', async () => {
    const { s, ends, emit } = newSession({ idleSeconds: 3, idleWarnSeconds: 2 });
    const ws = new FakeSocket();
    const pong = setInterval(() => ws.emit('pong'), 300);
    s.start(asWs(ws));
    await advance(1600);
    expect(ws.frames.filter((f) => f['type'] === 'idle_warn')).toHaveLength(1);
    ws.emit('message', Buffer.from('{"type":"keepalive"}'), false); // the "keep alive" button
    await advance(1600);
    expect(s.state).toBe('attached');
    ws.emit('message', Buffer.from('x'), true); // a keystroke
    await advance(1600);
    expect(s.state).toBe('attached');
    emit('output\n'); // the shell printing
    await advance(1600);
    expect(s.state).toBe('attached');
    expect(ends).toEqual([]);
    await advance(2000);
    clearInterval(pong);
    expect(ends.map((e) => e.reason)).toEqual(['idle']);
    // warned again after each activity: once per quiet stretch
    expect(ws.frames.filter((f) => f['type'] === 'idle_warn').length).toBeGreaterThanOrEqual(2);
  });

  it('passes a flood of resizes to the exec as a few, the latest size last', async () => {
    const { s, calls } = newSession();
    const ws = new FakeSocket();
    s.start(asWs(ws));
    await advance(10);
    for (let i = 0; i < 1000; i++)
      ws.emit('message', Buffer.from(`{"type":"resize","cols":${100 + (i % 50)},"rows":30}`), false);
    ws.emit('message', Buffer.from('{"type":"resize","cols":132,"rows":43}'), false);
    await advance(200);
    const resizes = calls.filter((c) => c.startsWith('resize'));
    expect(resizes.length).toBeLessThanOrEqual(4);
    expect(resizes.at(-1)).toBe('resize 132x43');
    // the same size again is not sent again
    ws.emit('message', Buffer.from('{"type":"resize","cols":132,"rows":43}'), false);
    await advance(100);
    expect(calls.filter((c) => c.startsWith('resize'))).toHaveLength(resizes.length);
    void s.end('test', null);
  });

  it('drops a socket that keeps sending malformed frames (the session waits for a resume)', async () => {
    const { s } = newSession({ graceSeconds: 60 });
    const ws = new FakeSocket();
    s.start(asWs(ws));
    await advance(10);
    for (let i = 0; i < 1000; i++) ws.emit('message', Buffer.from('{"type":"nope"}'), false);
    const errors = ws.frames.filter((f) => f['code'] === 'E_BAD_FRAME');
    expect(errors.length).toBe(65);
    expect(String(errors.at(-1)?.['message'])).toMatch(/more than 64 malformed control frames/);
    expect(ws.readyState).toBe(3);
    expect(s.state).toBe('detached');
    void s.end('test', null);
  });

  it('without resume, a browser that stops answering heartbeats ends the session', async () => {
    const { s, ends } = newSession();
    const ws = new FakeSocket();
    s.start(asWs(ws));
    await advance(2300);
    expect(ws.pings).toBeGreaterThanOrEqual(1);
    expect(ends.map((e) => e.reason)).toEqual(['heartbeat_timeout']);
  });

  it('keeps a dropped session for the grace period and replays exactly the missing output on resume', async () => {
    const { s, ends, emit } = newSession({ graceSeconds: 5, bufferBytes: 1024 });
    const first = new FakeSocket();
    s.start(asWs(first));
    await advance(10);
    emit('one ');
    emit('two ');
    const received = first.text().length - 2; // the last 2 bytes were in flight when the line dropped
    first.drop();
    expect(s.state).toBe('detached');
    emit('three ');
    const second = new FakeSocket();
    expect(s.resume(asWs(second), received)).toBe(true);
    emit('four');
    expect(second.frames[0]).toMatchObject({ type: 'hello', resumed: true });
    expect(first.text().slice(0, received) + second.text()).toBe('one two three four');
    expect(s.state).toBe('attached');
    expect(s.resume(asWs(new FakeSocket()), 0)).toBe(true); // a third tab takes over
    expect(second.closedWith?.code).toBe(4409);
    await s.end('test_done', null);
    expect(ends).toHaveLength(1);
  });

  it('pauses the exec while a detached session has half its buffer unread, and continues on resume', async () => {
    const { s, emit, isPaused, calls } = newSession({ graceSeconds: 5, bufferBytes: 64 });
    const ws = new FakeSocket();
    s.start(asWs(ws));
    await advance(10);
    ws.drop();
    let sent = '';
    for (let i = 0; i < 10 && !isPaused(); i++) {
      const chunk = `${String(i).padStart(7, '0')}\n`;
      sent += chunk;
      emit(chunk);
    }
    expect(isPaused()).toBe(true);
    expect(sent.length).toBeLessThanOrEqual(40);
    const back = new FakeSocket();
    expect(s.resume(asWs(back), 0)).toBe(true);
    expect(back.text()).toBe(sent); // nothing lost
    await advance(60);
    expect(calls).toContain('resume');
    await s.end('test_done', null);
  });

  it('ends with reason disconnected when the grace period passes; a late resume is refused', async () => {
    const { s, ends, emit } = newSession({ graceSeconds: 1, bufferBytes: 64 });
    const ws = new FakeSocket();
    s.start(asWs(ws));
    await advance(10);
    emit('x'.repeat(100));
    expect(s.resume(asWs(new FakeSocket()), 0)).toBe(false); // byte 0 fell out of the 64-byte buffer
    ws.drop();
    await advance(990); // just short of the 1 s grace period
    expect(s.state).toBe('detached');
    expect(ends).toEqual([]);
    await advance(210);
    expect(ends.map((e) => e.reason)).toEqual(['disconnected']);
    expect(s.resume(asWs(new FakeSocket()), 100)).toBe(false);
  });

  it('ends at the maximum length whatever the activity', async () => {
    const { s, ends, emit } = newSession({ maxSessionSeconds: 1 });
    const ws = new FakeSocket();
    const busy = setInterval(() => {
      ws.emit('pong');
      if (s.state !== 'ended') emit('.');
    }, 100);
    s.start(asWs(ws));
    await advance(999); // not before the maximum length
    expect(s.state).toBe('attached');
    expect(ends).toEqual([]);
    await advance(301);
    clearInterval(busy);
    expect(ends.map((e) => e.reason)).toEqual(['max_duration']);
  });

  it('warns once before the maximum length ends the session; activity neither delays nor repeats it', async () => {
    const { s, ends, emit } = newSession({ maxSessionSeconds: 3, maxWarnSeconds: 2 });
    const ws = new FakeSocket();
    const busy = setInterval(() => {
      ws.emit('pong');
      if (s.state !== 'ended') {
        emit('.');
        ws.emit('message', Buffer.from('x'), true);
      }
    }, 100);
    s.start(asWs(ws));
    await advance(800);
    expect(ws.frames.filter((f) => f['type'] === 'max_warn')).toEqual([]);
    await advance(500); // 1.3 s: the warning went out at 1 s, with the 2 s that were left
    expect(ws.frames.filter((f) => f['type'] === 'max_warn')).toEqual([
      { type: 'max_warn', secondsRemaining: 2 },
    ]);
    expect(ends).toEqual([]);
    await advance(2000);
    clearInterval(busy);
    expect(ends.map((e) => e.reason)).toEqual(['max_duration']);
    const types = ws.frames.map((f) => f['type']);
    expect(types.filter((t) => t === 'max_warn')).toHaveLength(1);
    expect(types.indexOf('max_warn')).toBeLessThan(types.indexOf('closed'));
  });

  it('never announces more than the lead time when the warning timer fires a little early', async () => {
    const { s } = newSession({ maxSessionSeconds: 3, maxWarnSeconds: 2 });
    const ws = new FakeSocket();
    const pong = setInterval(() => ws.emit('pong'), 100);
    s.start(asWs(ws));
    // The wall clock is 5 ms behind the timer clock, as when libuv fires a timer early.
    vi.setSystemTime(Date.now() - 5);
    await advance(1100);
    clearInterval(pong);
    expect(ws.frames.filter((f) => f['type'] === 'max_warn')).toEqual([
      { type: 'max_warn', secondsRemaining: 2 },
    ]);
  });

  it('repeats the max-length warning, with the time left, to a browser that resumes after it', async () => {
    const { s, ends } = newSession({ maxSessionSeconds: 3, maxWarnSeconds: 2, graceSeconds: 5 });
    const first = new FakeSocket();
    s.start(asWs(first));
    await advance(50);
    first.drop(); // gone before the warning: it reaches nobody
    await advance(1500);
    expect(first.frames.filter((f) => f['type'] === 'max_warn')).toEqual([]);
    const back = new FakeSocket();
    expect(s.resume(asWs(back), 0)).toBe(true);
    expect(back.frames.filter((f) => f['type'] === 'max_warn')).toEqual([
      { type: 'max_warn', secondsRemaining: 2 },
    ]);
    await advance(1700);
    expect(ends.map((e) => e.reason)).toEqual(['max_duration']);
  });

  it('sends no max-length warning when its lead time is 0', async () => {
    const { s, ends } = newSession({ maxSessionSeconds: 1, maxWarnSeconds: 0 });
    const ws = new FakeSocket();
    const pong = setInterval(() => ws.emit('pong'), 100);
    s.start(asWs(ws));
    await advance(1300);
    clearInterval(pong);
    expect(ends.map((e) => e.reason)).toEqual(['max_duration']);
    expect(ws.frames.filter((f) => f['type'] === 'max_warn')).toEqual([]);
  });

  it('keeps keystrokes typed before the shell is up and sends them once it is', async () => {
    const d = fakeDriver();
    let release: (() => void) | undefined;
    const slowStart: SessionDriver = {
      ...d.driver,
      start: async (io) => {
        await new Promise<void>((r) => (release = r));
        return d.driver.start(io);
      },
    };
    const s = new TerminalSession(
      {
        sessionId: 's',
        kind: 'pod_exec',
        subject: 'alice',
        tier: 'admin',
        cluster: 'lab',
        startedAt: new Date(),
      },
      slowStart,
      LIMITS,
      pino({ level: 'silent' }),
    );
    const ws = new FakeSocket();
    s.start(asWs(ws));
    ws.emit('message', Buffer.from('ls'), true);
    ws.emit('message', Buffer.from('\n'), true);
    expect(ws.isPaused).toBe(false);
    ws.emit('message', Buffer.alloc(70 * 1024, 0x61), true); // past 64 KiB: kept, and the socket paused
    expect(ws.isPaused).toBe(true);
    expect(d.stdin).toEqual([]);
    release?.();
    await advance(10);
    expect(d.stdin).toEqual(['ls', '\n', 'a'.repeat(70 * 1024)]);
    expect(ws.isPaused).toBe(false);
    await s.end('test_done', null);
  });

  it('pauses the browser socket while the exec is full and resumes it when the exec has room', async () => {
    const { s, stdin, setFull, ends } = newSession({ heartbeatSeconds: 1 });
    const ws = new FakeSocket();
    s.start(asWs(ws));
    await advance(10);
    ws.emit('message', Buffer.from('a'), true);
    expect(ws.isPaused).toBe(false);
    setFull(true);
    ws.emit('message', Buffer.from('b'), true); // taken, and the socket paused
    expect(ws.isPaused).toBe(true);
    ws.emit('message', Buffer.from('c'), true); // already read by the socket: still taken
    // Paused for longer than two heartbeats: no pong can be read, and that is not a dead browser.
    await advance(2300);
    expect(s.state).toBe('attached');
    setFull(false);
    expect(ws.isPaused).toBe(false);
    expect(stdin).toEqual(['a', 'b', 'c']);
    await s.end('test_done', null);
    expect(ends.map((e) => e.reason)).toEqual(['test_done']);
  });

  it('ends with E_BACKPRESSURE when stdin keeps coming past a paused socket', async () => {
    const { s, setFull, ends } = newSession();
    const ws = new FakeSocket();
    s.start(asWs(ws));
    await advance(10);
    setFull(true);
    ws.emit('message', Buffer.alloc(1024), true);
    expect(ws.isPaused).toBe(true);
    // A socket that does not honour the pause (nothing real does this; the bound is the backstop).
    for (let i = 0; i < 9 && s.state !== 'ended'; i++) ws.emit('message', Buffer.alloc(64 * 1024), true);
    await advance(10);
    expect(ends.map((e) => e.reason)).toEqual(['backpressure']);
    expect(ws.frames).toContainEqual(
      expect.objectContaining({ type: 'error', code: 'E_BACKPRESSURE', retryable: false }),
    );
    expect(ends[0]?.bytesIn).toBeLessThanOrEqual(1024 + 512 * 1024);
  });

  it('starts a resumed socket paused while stdin is held', async () => {
    const { s, setFull } = newSession({ graceSeconds: 5 });
    const ws = new FakeSocket();
    s.start(asWs(ws));
    await advance(10);
    setFull(true);
    ws.emit('message', Buffer.from('x'), true);
    ws.drop();
    const again = new FakeSocket();
    expect(s.resume(asWs(again), 0)).toBe(true);
    expect(again.isPaused).toBe(true);
    setFull(false);
    expect(again.isPaused).toBe(false);
    await s.end('test_done', null);
  });
});

describe('TerminalSession taken over from a lost replica (re-homing)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: FAKED });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A session adopted with output continuing at `outFrom`; the exec wired by the test. */
  async function adopted(outFrom: number, outTo: number, limits: Partial<SessionLimits> = {}) {
    const d = fakeDriver();
    const s = new TerminalSession(
      {
        sessionId: '0190f0f0-aaaa-7bbb-8ccc-000000000002',
        kind: 'cluster_shell',
        subject: 'alice',
        tier: 'admin',
        cluster: 'lab',
        startedAt: new Date(Date.now() - 60_000),
      },
      d.driver,
      { ...LIMITS, graceSeconds: 30, bufferBytes: 1024, ...limits },
      pino({ level: 'silent' }),
    );
    let handlers: ExecChannelHandlers | undefined;
    const closed: string[] = [];
    await s.adopt({
      outFrom,
      outTo,
      stdinBytes: 7,
      startedAt: Date.now() - 60_000,
      maxEndsAt: Date.now() + 120_000,
      attach: (h) => {
        handlers = h;
        return Promise.resolve({
          protocol: 'v5',
          write: (b: Uint8Array) => {
            d.stdin.push(Buffer.from(b).toString());
            return true;
          },
          end: () => undefined,
          resize: () => undefined,
          resume: () => undefined,
          close: () => closed.push('close'),
          abandon: (why: string) => closed.push(`abandon ${why}`),
        } as ExecChannel);
      },
    });
    const out = (t: string): boolean => handlers?.onOutput(1, Buffer.from(t)) ?? false;
    return {
      s,
      ...d,
      out,
      closed,
      exit: (code: number) => handlers?.onExit({ exitCode: code, status: 'Success' }),
    };
  }

  it('waits detached; a browser at any offset inside the kept window gets the rest exactly once', async () => {
    const { s, out, stdin, ends } = await adopted(100, 110);
    expect(s.state).toBe('detached');
    // A resume before the agent's window arrived: asked to retry, not refused.
    expect(s.awaitingOutput(105)).toBe(true);
    expect(s.awaitingOutput(111)).toBe(false);
    out('0123456789'); // offsets 100..109
    out('abc'); // 110..112
    expect(s.awaitingOutput(105)).toBe(false);
    expect(s.bytesOut).toBe(113);
    const ws = new FakeSocket();
    expect(s.resume(asWs(ws), 105)).toBe(true);
    expect(ws.frames[0]).toMatchObject({ type: 'hello', resumed: true });
    expect(ws.text()).toBe('56789abc');
    // Older than what the agent kept: not served.
    expect(s.resume(asWs(new FakeSocket()), 99)).toBe(false);
    ws.emit('message', Buffer.from('ls\n'), true);
    expect(stdin).toEqual(['ls\n']);
    ws.emit('message', Buffer.from(JSON.stringify({ type: 'close' })), false);
    await advance(10);
    expect(ends).toHaveLength(1);
    // The original start, and the stdin the agent had already received, count.
    expect(ends[0]).toMatchObject({ reason: 'client_close', bytesIn: 10, bytesOut: 113 });
    expect(ends[0]?.durationMs).toBeGreaterThanOrEqual(60_000);
  });

  it('keystrokes typed while the agent was still handing the stream over reach the exec once it is up', async () => {
    const d = fakeDriver();
    const s = new TerminalSession(
      {
        sessionId: '0190f0f0-aaaa-7bbb-8ccc-000000000003',
        kind: 'cluster_shell',
        subject: 'alice',
        tier: 'admin',
        cluster: 'lab',
        startedAt: new Date(),
      },
      d.driver,
      { ...LIMITS, graceSeconds: 30, bufferBytes: 1024 },
      pino({ level: 'silent' }),
    );
    const written: string[] = [];
    let handOver: ((ch: ExecChannel) => void) | undefined;
    const adopting = s.adopt({
      outFrom: 0,
      outTo: 0,
      stdinBytes: 0,
      startedAt: Date.now(),
      maxEndsAt: Date.now() + 60_000,
      attach: () =>
        new Promise<ExecChannel>((resolve) => {
          handOver = resolve;
        }),
    });
    const ws = new FakeSocket();
    expect(s.resume(asWs(ws), 0)).toBe(true);
    ws.emit('message', Buffer.from('early\n'), true);
    handOver?.({
      protocol: 'v5',
      write: (b: Uint8Array) => {
        written.push(Buffer.from(b).toString());
        return true;
      },
      end: () => undefined,
      resize: () => undefined,
      resume: () => undefined,
      close: () => undefined,
    });
    await adopting;
    expect(written).toEqual(['early\n']);
    await s.end('client_close', null);
  });

  it('ends "disconnected" when no browser comes back within the grace; the maximum length counts from the original start', async () => {
    const a = await adopted(0, 0);
    await advance(30_000);
    expect(a.ends.map((e) => e.reason)).toEqual(['disconnected']);
    const b = await adopted(0, 0, { graceSeconds: 600 });
    await advance(120_000);
    expect(b.ends.map((e) => e.reason)).toEqual(['max_duration']);
  });

  it('abandon (another replica holds it now): no teardown, no close; the browser is told to resume elsewhere (1001)', async () => {
    const { s, ends, closed } = await adopted(0, 0);
    const ws = new FakeSocket();
    expect(s.resume(asWs(ws), 0)).toBe(true);
    const reasons: string[] = [];
    s.onEnded((r) => reasons.push(r));
    s.abandon('taken over by replica C');
    expect(s.state).toBe('ended');
    expect(ws.closedWith).toMatchObject({ code: 1001 });
    expect(closed).toEqual(['abandon taken over by replica C']);
    expect(reasons).toEqual(['rehomed']);
    await s.end('client_close', null);
    await advance(60_000);
    expect(ends).toEqual([]);
  });
});
