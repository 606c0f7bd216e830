import { STDIN_FRAME_BYTES, TERMINAL_CLOSE, TERMINAL_FRAME_MAX_BYTES } from '@periscope/protocol';
import { describe, expect, it } from 'vitest';

import {
  attachUrl,
  backoffDelay,
  DEFAULT_BACKOFF,
  SessionClient,
  wsOriginOf,
  type SessionEvents,
  type SessionState,
  type SocketLike,
} from './session-client';

/** A WebSocket double: records what the client sends and lets the test play the server. */
class FakeSocket implements SocketLike {
  binaryType: BinaryType = 'blob';
  readyState = 0;
  onopen: SocketLike['onopen'] = null;
  onmessage: SocketLike['onmessage'] = null;
  onclose: SocketLike['onclose'] = null;
  onerror: SocketLike['onerror'] = null;
  readonly sent: (string | Uint8Array)[] = [];
  closedWith: { code?: number; reason?: string } | undefined;

  constructor(readonly url: string) {}

  send(data: string | ArrayBuffer): void {
    this.sent.push(typeof data === 'string' ? data : new Uint8Array(data.slice(0)));
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // --- the server side ---
  accept(): void {
    this.readyState = 1;
    this.onopen?.(new Event('open'));
  }
  text(frame: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(frame) } as MessageEvent);
  }
  bytes(s: string): void {
    const b = new TextEncoder().encode(s);
    this.onmessage?.({ data: b.buffer } as MessageEvent);
  }
  drop(code = 1006, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason } as CloseEvent);
  }
  controlFrames(): unknown[] {
    return this.sent.filter((s): s is string => typeof s === 'string').map((s) => JSON.parse(s) as unknown);
  }
}

function harness(opts: { maxAttempts?: number } = {}) {
  const sockets: FakeSocket[] = [];
  const timers: { cb: () => void; ms: number }[] = [];
  const states: SessionState[] = [];
  let output = '';
  const dec = new TextDecoder();
  const client = new SessionClient({
    sessionId: 'sess-1',
    socketUrl: 'ws://localhost:8080/api/clusters/local/shell?ticket=t1',
    wsOrigin: 'ws://localhost:8080',
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    random: () => 0.5,
    now: () => 1000,
    backoff: { baseMs: 100, maxMs: 1000, maxAttempts: opts.maxAttempts ?? 3 },
    setTimer: (cb, ms) => {
      timers.push({ cb, ms });
      return timers.length;
    },
    clearTimer: () => undefined,
    events: {
      onOutput: (b) => {
        output += dec.decode(b, { stream: true });
      },
      onState: (s) => states.push(s),
    },
  });
  const last = (): FakeSocket => sockets[sockets.length - 1]!;
  const fire = (): void => {
    const t = timers.shift();
    if (!t) throw new Error('no timer pending');
    t.cb();
  };
  return { client, sockets, timers, states, last, fire, output: () => output };
}

const hello = { type: 'hello', sessionId: 'sess-1', kind: 'cluster_shell', cluster: 'local', mode: 'bash' };

describe(backoffDelay.name, () => {
  it('grows exponentially, is capped, and jitters within [d/2, d]', () => {
    const o = { baseMs: 500, maxMs: 10_000, maxAttempts: 10 };
    expect(backoffDelay(1, o, () => 0)).toBe(250);
    expect(backoffDelay(1, o, () => 1)).toBe(500);
    expect(backoffDelay(3, o, () => 1)).toBe(2000);
    expect(backoffDelay(10, o, () => 1)).toBe(10_000);
    expect(backoffDelay(10, o, () => 0)).toBe(5000);
    for (let a = 1; a <= DEFAULT_BACKOFF.maxAttempts; a++) {
      const d = backoffDelay(a, DEFAULT_BACKOFF, Math.random);
      expect(d).toBeGreaterThan(0);
      expect(d).toBeLessThanOrEqual(DEFAULT_BACKOFF.maxMs);
    }
  });
});

describe('URLs', () => {
  it('derives the socket origin and the resume URL', () => {
    expect(wsOriginOf({ protocol: 'https:', host: 'p.example.com' })).toBe('wss://p.example.com');
    expect(wsOriginOf({ protocol: 'http:', host: 'localhost:8080' })).toBe('ws://localhost:8080');
    expect(attachUrl('ws://h', 'a/b', 12)).toBe('ws://h/api/sessions/a%2Fb/attach?received=12');
  });
});

describe(SessionClient.name, () => {
  it('opens, sends the size on hello, streams both ways and counts bytes', () => {
    const h = harness();
    h.client.resize(100, 30);
    h.client.connect();
    const s = h.last();
    expect(s.url).toBe('ws://localhost:8080/api/clusters/local/shell?ticket=t1');
    expect(s.binaryType).toBe('arraybuffer');
    s.accept();
    expect(h.client.sendInput('x')).toBe(false); // no hello yet
    s.text(hello);
    expect(h.states.at(-1)).toEqual({ phase: 'open', since: 1000 });
    expect(s.controlFrames()).toEqual([{ type: 'resize', cols: 100, rows: 30 }]);
    s.bytes('$ ');
    s.bytes('héllo');
    expect(h.output()).toBe('$ héllo');
    expect(h.client.receivedBytes).toBe(2 + new TextEncoder().encode('héllo').length);
    expect(h.client.sendInput('ls\r')).toBe(true);
    expect(new TextDecoder().decode(s.sent.at(-1) as Uint8Array)).toBe('ls\r');
    expect(h.client.sentBytes).toBe(3);
  });

  it('sends a large paste whole, in frames the server accepts', () => {
    const h = harness();
    h.client.connect();
    h.last().accept();
    h.last().text(hello);
    const paste = new Uint8Array(STDIN_FRAME_BYTES * 8 + 123).map((_, i) => i % 251);
    expect(h.client.sendInput(paste)).toBe(true);
    const frames = h.last().sent.filter((f): f is Uint8Array => typeof f !== 'string');
    expect(frames).toHaveLength(9);
    expect(Math.max(...frames.map((f) => f.length))).toBeLessThanOrEqual(TERMINAL_FRAME_MAX_BYTES);
    const joined = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    let at = 0;
    for (const f of frames) {
      joined.set(f, at);
      at += f.length;
    }
    expect(joined).toEqual(paste);
    expect(h.client.sentBytes).toBe(paste.length);
  });

  it('clamps sizes to the protocol limits', () => {
    const h = harness();
    h.client.connect();
    h.last().accept();
    h.last().text(hello);
    h.client.resize(5000, 0);
    expect(h.last().controlFrames().at(-1)).toEqual({ type: 'resize', cols: 1000, rows: 1 });
  });

  it('ends on the first closed frame and never reconnects', () => {
    const h = harness();
    h.client.connect();
    h.last().accept();
    h.last().text(hello);
    h.last().text({ type: 'closed', reason: 'exit', exitCode: 0 });
    h.last().text({ type: 'closed', reason: 'exit', exitCode: 0 });
    h.last().drop(1000, 'exit');
    expect(h.states.at(-1)).toEqual({ phase: 'closed', reason: 'exit', exitCode: 0 });
    expect(h.states.filter((s) => s.phase === 'closed')).toHaveLength(1);
    expect(h.timers).toHaveLength(0);
    expect(h.sockets).toHaveLength(1);
  });

  it('does not resume a session whose first socket never said hello', () => {
    const h = harness();
    h.client.connect();
    h.last().drop(1006);
    expect(h.states.at(-1)).toMatchObject({ phase: 'error', code: 'E_TRANSPORT' });
    expect(h.timers).toHaveLength(0);
  });

  it('resumes an unplanned drop at received=N with backoff, on the same client', () => {
    const h = harness();
    h.client.connect();
    h.last().accept();
    h.last().text(hello);
    h.last().bytes('abc');
    h.last().drop(1006);
    expect(h.states.at(-1)).toEqual({ phase: 'reconnecting', attempt: 1, maxAttempts: 3, delayMs: 75 });
    expect(h.timers[0]?.ms).toBe(75);
    h.fire();
    expect(h.last().url).toBe('ws://localhost:8080/api/sessions/sess-1/attach?received=3');
    // the network is still down
    h.last().drop(1006);
    expect(h.states.at(-1)).toMatchObject({ phase: 'reconnecting', attempt: 2, delayMs: 150 });
    h.fire();
    const s = h.last();
    s.accept();
    s.text({ ...hello, resumed: true });
    s.bytes('def');
    expect(h.output()).toBe('abcdef');
    expect(h.client.receivedBytes).toBe(6);
    expect(h.states.at(-1)).toEqual({ phase: 'open', since: 1000 });
    // a later drop starts counting attempts from 1 again, from the new offset
    s.drop(1006);
    expect(h.states.at(-1)).toMatchObject({ phase: 'reconnecting', attempt: 1 });
    h.fire();
    expect(h.last().url).toContain('received=6');
  });

  it('resends the size after a resume', () => {
    const h = harness();
    h.client.resize(90, 20);
    h.client.connect();
    h.last().accept();
    h.last().text(hello);
    h.last().drop();
    h.fire();
    h.last().accept();
    h.last().text({ ...hello, resumed: true });
    expect(h.last().controlFrames()).toEqual([{ type: 'resize', cols: 90, rows: 20 }]);
  });

  it('shows the session as gone on E_SESSION_GONE or close code 4410', () => {
    const h = harness();
    h.client.connect();
    h.last().accept();
    h.last().text(hello);
    h.last().drop();
    h.fire();
    h.last().accept();
    h.last().text({ type: 'error', code: 'E_SESSION_GONE', message: 'gone', retryable: false });
    h.last().drop(TERMINAL_CLOSE.sessionGone, 'session gone');
    expect(h.states.at(-1)).toEqual({ phase: 'gone', message: 'gone' });
    expect(h.timers).toHaveLength(0);

    const g = harness();
    g.client.connect();
    g.last().accept();
    g.last().text(hello);
    g.last().drop();
    g.fire();
    g.last().drop(TERMINAL_CLOSE.sessionGone, 'session gone');
    expect(g.states.at(-1)).toEqual({ phase: 'gone', message: 'session gone' });
  });

  it('gives up after the last attempt', () => {
    const h = harness({ maxAttempts: 2 });
    h.client.connect();
    h.last().accept();
    h.last().text(hello);
    h.last().drop();
    h.fire();
    h.last().drop();
    h.fire();
    h.last().drop();
    expect(h.states.at(-1)).toMatchObject({ phase: 'error', code: 'E_RECONNECT_FAILED' });
    expect(h.timers).toHaveLength(0);
  });

  it('a planned close sends the close frame and never reconnects', () => {
    const h = harness();
    h.client.connect();
    h.last().accept();
    h.last().text(hello);
    h.client.close();
    expect(h.last().controlFrames().at(-1)).toEqual({ type: 'close' });
    expect(h.last().closedWith).toEqual({ code: 1000, reason: 'client close' });
    h.last().drop(1000);
    expect(h.timers).toHaveLength(0);
    expect(h.states.at(-1)).toMatchObject({ phase: 'closed' });
  });

  it('a non-retryable error frame is final; a retryable one is only a notice', () => {
    const notices: string[] = [];
    const h = harness();
    (h.client as unknown as { events: { onNotice: (c: string) => void } }).events.onNotice = (c) =>
      notices.push(c);
    h.client.connect();
    h.last().accept();
    h.last().text(hello);
    h.last().text({ type: 'error', code: 'E_STREAM', message: 'x', retryable: true });
    expect(notices).toEqual(['E_STREAM']);
    expect(h.states.at(-1)?.phase).toBe('open');
    h.last().text({ type: 'error', code: 'E_PROVISION', message: 'pod failed' });
    h.last().drop(1000);
    expect(h.states.at(-1)).toEqual({ phase: 'error', code: 'E_PROVISION', message: 'pod failed' });
    expect(h.timers).toHaveLength(0);
  });

  it('keep-alive sends a keepalive frame (a resize is not activity on the server)', () => {
    const h = harness();
    h.client.resize(80, 24);
    h.client.connect();
    h.last().accept();
    h.last().text(hello);
    expect(h.client.keepAlive()).toBe(true);
    expect(h.last().controlFrames()).toEqual([{ type: 'resize', cols: 80, rows: 24 }, { type: 'keepalive' }]);
  });

  it('retry now skips the wait; give up stops', () => {
    const h = harness();
    h.client.connect();
    h.last().accept();
    h.last().text(hello);
    h.last().drop();
    h.client.retryNow();
    expect(h.sockets).toHaveLength(2);
    h.last().drop();
    h.client.giveUp();
    expect(h.states.at(-1)).toMatchObject({ phase: 'error', code: 'E_RECONNECT_FAILED' });
  });

  it('the drop hook closes without a close frame and resumes', () => {
    const h = harness();
    h.client.connect();
    h.last().accept();
    h.last().text(hello);
    expect(h.client.dropConnection()).toBe(true);
    expect(h.last().closedWith?.code).toBe(4000);
    expect(h.last().controlFrames()).not.toContainEqual({ type: 'close' });
    h.last().drop(4000);
    expect(h.states.at(-1)?.phase).toBe('reconnecting');
  });
});

/**
 * Every event the client reports, in order, with sockets that can fail to open and timers that
 * record cancellation: for the paths the harness above does not watch.
 */
function recorder(opts: { maxAttempts?: number } = {}) {
  const sockets: FakeSocket[] = [];
  const log: unknown[] = [];
  const timers = new Map<number, { cb: () => void; ms: number }>();
  let nextTimer = 0;
  let failOpens = 0;
  const events: Required<SessionEvents> = {
    onOutput: (b) => log.push(['output', new TextDecoder().decode(b)]),
    onState: (s) => log.push(['state', s]),
    onHello: (h) => log.push(['hello', h.sessionId]),
    onStatus: (phase, message) => log.push(['status', phase, message]),
    onIdleWarn: (secs) => log.push(['idle_warn', secs]),
    onMaxWarn: (secs) => log.push(['max_warn', secs]),
    onWatch: (watchers) => log.push(['watch', watchers]),
    onActivity: () => log.push(['activity']),
    onNotice: (code, message) => log.push(['notice', code, message]),
  };
  const client = new SessionClient({
    sessionId: 'sess-1',
    socketUrl: 'ws://h/first',
    wsOrigin: 'ws://h',
    createSocket: (url) => {
      if (failOpens > 0) {
        failOpens--;
        throw new Error('blocked by policy');
      }
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    random: () => 0.5,
    now: () => 7,
    backoff: { baseMs: 100, maxMs: 250, maxAttempts: opts.maxAttempts ?? 5 },
    setTimer: (cb, ms) => {
      timers.set(++nextTimer, { cb, ms });
      return nextTimer;
    },
    clearTimer: (h) => {
      timers.delete(h as number);
    },
    events,
  });
  const last = (): FakeSocket => sockets[sockets.length - 1]!;
  /** runs the oldest pending timer */
  const fire = (): void => {
    const [id, t] = [...timers.entries()][0] ?? [];
    if (id === undefined || !t) throw new Error('no timer pending');
    timers.delete(id);
    t.cb();
  };
  const start = (): FakeSocket => {
    client.connect();
    last().accept();
    last().text(hello);
    log.length = 0;
    return last();
  };
  const states = (): SessionState[] =>
    log.filter((e): e is ['state', SessionState] => (e as unknown[])[0] === 'state').map((e) => e[1]);
  return {
    client,
    sockets,
    log,
    timers,
    last,
    fire,
    start,
    states,
    failNextOpens: (n: number) => {
      failOpens = n;
    },
  };
}

describe(`${SessionClient.name}: events, resume, close codes, error frames, stdin frames`, () => {
  describe('events', () => {
    it('reports hello, status, idle and max-length warnings and activity in order', () => {
      const r = recorder();
      r.client.connect();
      r.last().accept();
      r.last().text({ type: 'status', phase: 'pod', message: 'pulling image' });
      r.last().text(hello);
      r.last().text({ type: 'idle_warn', secondsRemaining: 12 });
      r.last().text({ type: 'max_warn', secondsRemaining: 300 });
      r.last().text({ type: 'watch', watchers: ['admin'] });
      r.last().bytes('$ ');
      expect(r.client.sendInput('x')).toBe(true);
      expect(r.client.keepAlive()).toBe(true);
      expect(r.log).toEqual([
        ['status', 'pod', 'pulling image'],
        ['hello', 'sess-1'],
        ['state', { phase: 'open', since: 7 }],
        ['idle_warn', 12],
        ['max_warn', 300],
        ['watch', ['admin']],
        ['activity'],
        ['output', '$ '],
        ['activity'],
        ['activity'],
      ]);
      expect(r.client.hello).toMatchObject({ sessionId: 'sess-1', cluster: 'local' });
    });

    it('ignores text frames outside the contract and empty binary frames', () => {
      const r = recorder();
      r.start();
      r.last().onmessage?.({ data: 'not json' } as MessageEvent);
      r.last().text({ type: 'exec', argv: ['rm'] });
      r.last().onmessage?.({ data: new ArrayBuffer(0) } as MessageEvent);
      r.last().onmessage?.({ data: 42 } as MessageEvent);
      expect(r.log).toEqual([]);
      expect(r.client.receivedBytes).toBe(0);
    });

    it('takes output as any view and counts only its own bytes', () => {
      const r = recorder();
      r.start();
      const whole = new TextEncoder().encode('__abc__');
      r.last().onmessage?.({ data: whole.subarray(2, 5) } as MessageEvent);
      expect(r.log).toEqual([['activity'], ['output', 'abc']]);
      expect(r.client.receivedBytes).toBe(3);
    });

    it('keeps the output that trails a closed frame, and none after a final error', () => {
      const r = recorder();
      r.start();
      r.last().text({ type: 'closed', reason: 'exit', exitCode: 3 });
      r.last().bytes('logout\r\n');
      expect(r.log.at(-1)).toEqual(['output', 'logout\r\n']);
      expect(r.client.state).toEqual({ phase: 'closed', reason: 'exit', exitCode: 3 });

      const e = recorder();
      e.start();
      e.last().text({ type: 'error', code: 'E_PROVISION', message: 'pod failed' });
      e.last().bytes('late');
      expect(e.client.receivedBytes).toBe(0);
      expect(e.log).toEqual([['state', { phase: 'error', code: 'E_PROVISION', message: 'pod failed' }]]);
    });
  });

  describe('reconnect and resume', () => {
    it('resumes at the session id the last hello named, with capped backoff', () => {
      const r = recorder({ maxAttempts: 5 });
      r.start();
      r.last().text({ ...hello, sessionId: 'sess-9' });
      r.last().bytes('1234');
      const delays: number[] = [];
      for (let i = 0; i < 4; i++) {
        r.last().drop(1006);
        delays.push([...r.timers.values()][0]!.ms);
        r.fire();
      }
      // 100·2^(n-1), capped at 250, equal jitter at random 0.5 → 3/4 of it
      expect(delays).toEqual([75, 150, 188, 188]);
      expect(r.last().url).toBe('ws://h/api/sessions/sess-9/attach?received=4');
    });

    it('does not send input or size on a resumed socket before its hello', () => {
      const r = recorder();
      r.client.resize(80, 24);
      r.start();
      r.last().drop(1006);
      expect(r.client.sendInput('lost')).toBe(false);
      r.fire();
      const s = r.last();
      s.accept();
      expect(r.client.sendInput('early')).toBe(false);
      expect(s.sent).toEqual([]);
      s.text({ ...hello, resumed: true });
      expect(r.client.sendInput('ok')).toBe(true);
      expect(s.sent.filter((f) => typeof f !== 'string')).toHaveLength(1);
      expect(s.controlFrames()).toEqual([{ type: 'resize', cols: 80, rows: 24 }]);
    });

    it('counts a socket that cannot even be created as a failed attempt', () => {
      const r = recorder({ maxAttempts: 2 });
      r.start();
      r.last().drop(1006);
      r.failNextOpens(2);
      r.fire();
      expect(r.client.state).toMatchObject({ phase: 'reconnecting', attempt: 2 });
      r.fire();
      expect(r.client.state).toMatchObject({ phase: 'error', code: 'E_RECONNECT_FAILED' });
      expect(r.sockets).toHaveLength(1);
    });

    it('explains a first socket that could not be created', () => {
      const r = recorder();
      r.failNextOpens(1);
      r.client.connect();
      expect(r.client.state).toEqual({
        phase: 'error',
        code: 'E_TRANSPORT',
        message: 'the terminal socket closed before the session started (code 1006: blocked by policy)',
      });
      expect(r.timers.size).toBe(0);
    });

    it('a planned close while reconnecting cancels the pending attempt', () => {
      const r = recorder();
      r.start();
      r.last().drop(1006);
      expect(r.timers.size).toBe(1);
      r.client.close();
      expect(r.timers.size).toBe(0);
      expect(r.client.state).toEqual({ phase: 'closed', reason: 'closed by you' });
      r.client.retryNow();
      expect(r.sockets).toHaveLength(1);
      expect(r.client.dropConnection()).toBe(false);
    });

    it('retry now does nothing unless reconnecting; give up after an end changes nothing', () => {
      const r = recorder();
      r.start();
      r.client.retryNow();
      expect(r.sockets).toHaveLength(1);
      r.last().text({ type: 'closed', reason: 'exit', exitCode: 0 });
      r.client.giveUp();
      expect(r.client.state).toEqual({ phase: 'closed', reason: 'exit', exitCode: 0 });
    });

    it('give up closes the half-open socket and stops every later attempt', () => {
      const r = recorder();
      r.start();
      r.last().drop(1006);
      r.fire();
      const pending = r.last();
      r.client.giveUp();
      expect(pending.closedWith).toBeDefined();
      expect(pending.onclose).toBeNull();
      expect(r.states().at(-1)).toMatchObject({ phase: 'error', code: 'E_RECONNECT_FAILED' });
      expect(r.timers.size).toBe(0);
    });
  });

  describe('close codes', () => {
    it.each([
      [TERMINAL_CLOSE.normal, 'a normal close without a closed frame'],
      [1001, 'going away (the server keeps the session)'],
      [1008, 'a policy close'],
      [4000, 'the test drop'],
    ])('resumes after %i: %s', (code) => {
      const r = recorder();
      r.start();
      r.last().drop(code);
      expect(r.client.state).toMatchObject({ phase: 'reconnecting', attempt: 1 });
    });

    it('4410 ends the session even on a first socket that never said hello', () => {
      const r = recorder();
      r.client.connect();
      r.last().drop(TERMINAL_CLOSE.sessionGone, '');
      expect(r.client.state).toEqual({ phase: 'gone', message: 'the session has ended' });
      expect(r.timers.size).toBe(0);
    });

    it('a first socket closed before its hello is a transport error naming the close', () => {
      const r = recorder();
      r.client.connect();
      r.last().accept();
      r.last().drop(1008, 'origin not allowed');
      expect(r.client.state).toEqual({
        phase: 'error',
        code: 'E_TRANSPORT',
        message: 'the terminal socket closed before the session started (code 1008: origin not allowed)',
      });
    });
  });

  describe('error frames', () => {
    it('E_SESSION_GONE without a message still says the session ended', () => {
      const r = recorder();
      r.start();
      r.last().text({ type: 'error', code: 'E_SESSION_GONE', message: '' });
      expect(r.client.state).toEqual({ phase: 'gone', message: 'the session has ended' });
    });

    it('a refusal on the first socket is final, and the first final state wins', () => {
      const r = recorder();
      r.client.connect();
      r.last().accept();
      r.last().text({ type: 'error', code: 'E_FORBIDDEN', message: 'no', retryable: false });
      r.last().text({ type: 'error', code: 'E_SESSION_GONE', message: 'gone' });
      r.last().text({ type: 'closed', reason: 'exit' });
      r.last().drop(TERMINAL_CLOSE.sessionGone);
      expect(r.states()).toEqual([{ phase: 'error', code: 'E_FORBIDDEN', message: 'no' }]);
    });

    it('a retryable error is a notice and changes no state', () => {
      const r = recorder();
      r.start();
      r.last().text({ type: 'error', code: 'E_RATE_LIMIT', message: 'slow down', retryable: true });
      expect(r.log).toEqual([['notice', 'E_RATE_LIMIT', 'slow down']]);
      expect(r.client.state.phase).toBe('open');
    });
  });

  describe('stdin frames', () => {
    const binary = (s: FakeSocket): Uint8Array[] =>
      s.sent.filter((f): f is Uint8Array => typeof f !== 'string');

    it('splits exactly at the frame size', () => {
      const r = recorder();
      const s = r.start();
      r.client.sendInput(new Uint8Array(STDIN_FRAME_BYTES));
      expect(binary(s).map((f) => f.length)).toEqual([STDIN_FRAME_BYTES]);
      r.client.sendInput(new Uint8Array(STDIN_FRAME_BYTES + 1));
      expect(binary(s).map((f) => f.length)).toEqual([STDIN_FRAME_BYTES, STDIN_FRAME_BYTES, 1]);
      expect(r.client.sentBytes).toBe(2 * STDIN_FRAME_BYTES + 1);
    });

    it('sends only the bytes of a view, never the buffer behind it', () => {
      const r = recorder();
      const s = r.start();
      const backing = new TextEncoder().encode('xxHELLOxx');
      expect(r.client.sendInput(backing.subarray(2, 7))).toBe(true);
      expect(binary(s).map((f) => new TextDecoder().decode(f))).toEqual(['HELLO']);
    });

    it('sends nothing for empty input', () => {
      const r = recorder();
      const s = r.start();
      expect(r.client.sendInput('')).toBe(false);
      expect(r.client.sendInput(new Uint8Array(0))).toBe(false);
      expect(s.sent).toEqual([]);
      expect(r.log).toEqual([]);
    });

    it('encodes text as UTF-8 and counts bytes, not characters', () => {
      const r = recorder();
      const s = r.start();
      r.client.sendInput('é€');
      expect(r.client.sentBytes).toBe(5);
      expect(Array.from(binary(s)[0] ?? [])).toEqual([0xc3, 0xa9, 0xe2, 0x82, 0xac]);
    });
  });
});
