import type { ExecChannelHandlers } from '@periscope/cluster-ops';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type WebSocket from 'ws';

import { FakeSocket } from './fake-socket';
import { TerminalSession, type SessionDriver, type SessionEnd, type SessionLimits } from './terminal-session';

const LIMITS: SessionLimits = {
  idleSeconds: 600,
  idleWarnSeconds: 1,
  heartbeatSeconds: 1,
  maxSessionSeconds: 3600,
  graceSeconds: 0,
  bufferBytes: 64,
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const asWs = (s: FakeSocket): WebSocket => s as unknown as WebSocket;

/** A driver whose exec is driven by the test: `emit` output, `exit`, and what the session did. */
function fakeDriver() {
  const calls: string[] = [];
  const ends: SessionEnd[] = [];
  const stdin: string[] = [];
  let handlers: ExecChannelHandlers | undefined;
  let paused = false;
  const driver: SessionDriver = {
    start: (io) => {
      calls.push('start');
      io.status('ready', 'pod is ready');
      handlers = io.handlers;
      return Promise.resolve({
        protocol: 'v5',
        write: (b) => stdin.push(Buffer.from(b).toString()),
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
  it('says hello, shows progress, pumps bytes both ways and closes with the exit code, even 0', async () => {
    const { s, calls, ends, stdin, emit, exit } = newSession();
    const ws = new FakeSocket();
    s.start(asWs(ws));
    await sleep(10);
    ws.emit('message', Buffer.from(JSON.stringify({ type: 'resize', cols: 120, rows: 40 })), false);
    ws.emit('message', Buffer.from('ls\n'), true);
    emit('file\n');
    exit(0);
    await sleep(10);
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
    await sleep(10);
    for (const bad of ['{', '{"type":"resize","cols":100000,"rows":5}', '{"type":"signal"}', 'null'])
      ws.emit('message', Buffer.from(bad), false);
    expect(ws.frames.filter((f) => f['code'] === 'E_BAD_FRAME')).toHaveLength(4);
    expect(s.state).toBe('attached');
    ws.emit('message', Buffer.from('{"type":"close"}'), false);
    await sleep(10);
    expect(ends.map((e) => e.reason)).toEqual(['client_close']);
  });

  it('warns before the idle cut and cuts once; a resize counts as activity', async () => {
    const { s, ends } = newSession({ idleSeconds: 3, idleWarnSeconds: 2 });
    const ws = new FakeSocket();
    const pong = setInterval(() => ws.emit('pong'), 300);
    s.start(asWs(ws));
    await sleep(1600);
    expect(ws.frames.some((f) => f['type'] === 'idle_warn')).toBe(true);
    ws.emit('message', Buffer.from('{"type":"resize","cols":80,"rows":24}'), false); // keep alive
    await sleep(1200);
    expect(s.state).toBe('attached');
    await sleep(2400);
    clearInterval(pong);
    expect(ends.map((e) => e.reason)).toEqual(['idle']);
    expect(ws.frames).toContainEqual({ type: 'closed', reason: 'idle' });
  }, 10_000);

  it('without resume, a browser that stops answering heartbeats ends the session', async () => {
    const { s, ends } = newSession();
    const ws = new FakeSocket();
    s.start(asWs(ws));
    await sleep(2300);
    expect(ws.pings).toBeGreaterThanOrEqual(1);
    expect(ends.map((e) => e.reason)).toEqual(['heartbeat_timeout']);
  }, 10_000);

  it('keeps a dropped session for the grace period and replays exactly the missing output on resume', async () => {
    const { s, ends, emit } = newSession({ graceSeconds: 5, bufferBytes: 1024 });
    const first = new FakeSocket();
    s.start(asWs(first));
    await sleep(10);
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
    await sleep(10);
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
    await sleep(60);
    expect(calls).toContain('resume');
    await s.end('test_done', null);
  });

  it('ends with reason disconnected when the grace period passes; a late resume is refused', async () => {
    const { s, ends, emit } = newSession({ graceSeconds: 1, bufferBytes: 64 });
    const ws = new FakeSocket();
    s.start(asWs(ws));
    await sleep(10);
    emit('x'.repeat(100));
    expect(s.resume(asWs(new FakeSocket()), 0)).toBe(false); // byte 0 fell out of the 64-byte buffer
    ws.drop();
    await sleep(1200);
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
    await sleep(1300);
    clearInterval(busy);
    expect(ends.map((e) => e.reason)).toEqual(['max_duration']);
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
    ws.emit('message', Buffer.alloc(70 * 1024), true); // beyond the 64 KiB bound: dropped
    expect(d.stdin).toEqual([]);
    release?.();
    await sleep(10);
    expect(d.stdin).toEqual(['ls', '\n']);
    await s.end('test_done', null);
  });
});
