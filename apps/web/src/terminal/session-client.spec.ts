import { STDIN_FRAME_BYTES, TERMINAL_FRAME_MAX_BYTES } from '@periscope/protocol';
import { describe, expect, it } from 'vitest';

import {
  attachUrl,
  backoffDelay,
  CLOSE_SESSION_GONE,
  DEFAULT_BACKOFF,
  parseServerFrame,
  SessionClient,
  wsOriginOf,
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

describe(parseServerFrame.name, () => {
  it('parses the frames of the contract', () => {
    expect(parseServerFrame(JSON.stringify({ ...hello, resumed: true }))).toEqual({
      ...hello,
      resumed: true,
    });
    expect(parseServerFrame('{"type":"status","phase":"pod","message":"pulling"}')).toEqual({
      type: 'status',
      phase: 'pod',
      message: 'pulling',
    });
    expect(parseServerFrame('{"type":"idle_warn","secondsRemaining":30}')).toEqual({
      type: 'idle_warn',
      secondsRemaining: 30,
    });
    expect(parseServerFrame('{"type":"closed","reason":"exit","exitCode":0}')).toEqual({
      type: 'closed',
      reason: 'exit',
      exitCode: 0,
    });
  });

  it('treats missing optional fields as absent or false', () => {
    expect(parseServerFrame('{"type":"closed","reason":"idle"}')).toEqual({ type: 'closed', reason: 'idle' });
    expect(parseServerFrame('{"type":"error","code":"E_X","message":"m"}')).toEqual({
      type: 'error',
      code: 'E_X',
      message: 'm',
      retryable: false,
    });
  });

  it.each(['{', '[]', 'null', '{"type":"exec"}', '{"type":"hello"}'])('ignores %s', (text) => {
    expect(parseServerFrame(text)).toBeUndefined();
  });
});

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
    h.last().drop(CLOSE_SESSION_GONE, 'session gone');
    expect(h.states.at(-1)).toEqual({ phase: 'gone', message: 'gone' });
    expect(h.timers).toHaveLength(0);

    const g = harness();
    g.client.connect();
    g.last().accept();
    g.last().text(hello);
    g.last().drop();
    g.fire();
    g.last().drop(CLOSE_SESSION_GONE, 'session gone');
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
