import { EventEmitter } from 'node:events';

import type { ExecChannel, ExecChannelHandlers } from '@periscope/cluster-ops';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type WebSocket from 'ws';

import { TerminalSession, type SessionDriver, type SessionEnd } from '../terminal/terminal-session';
import type { SessionTap } from './session-recorder';

/** Enough of a WebSocket for the session's output path (unit test of the tap wiring). */
class Socket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  frames: Record<string, unknown>[] = [];
  send(data: string | Uint8Array): void {
    if (typeof data === 'string') this.frames.push(JSON.parse(data) as Record<string, unknown>);
  }
  ping(): void {}
  pause(): void {}
  resume(): void {}
  close(): void {
    this.readyState = 3;
  }
}

/** A tap whose readiness the test sets; it records what it was given. */
class Tap implements SessionTap {
  ready = true;
  out: string[] = [];
  inp: string[] = [];
  sizes: string[] = [];
  closed = 0;
  output(b: Uint8Array): void {
    this.out.push(Buffer.from(b).toString());
  }
  input(b: Uint8Array): void {
    this.inp.push(Buffer.from(b).toString());
  }
  resize(c: number, r: number): void {
    this.sizes.push(`${c}x${r}`);
  }
  close(): Promise<Record<string, unknown>> {
    this.closed++;
    return Promise.resolve({ recording_id: 'r1', recording_bytes: 3 });
  }
}

function setup(graceSeconds = 0) {
  let handlers: ExecChannelHandlers | undefined;
  let resumed = 0;
  let end: SessionEnd | undefined;
  const exec: ExecChannel = {
    protocol: 'x',
    write: () => true,
    end: () => undefined,
    resize: () => undefined,
    resume: () => {
      resumed++;
    },
    close: () => undefined,
  };
  const driver: SessionDriver = {
    start: (io) => {
      handlers = io.handlers;
      return Promise.resolve(exec);
    },
    classifyExit: () => ({ reason: 'exit', exitCode: 0 }),
    classifyStartError: () => ({ reason: 'x', error: { code: 'E', message: 'x', retryable: false } }),
    finish: (e) => {
      end = e;
      return Promise.resolve();
    },
  };
  const s = new TerminalSession(
    { sessionId: 's1', kind: 'pod_exec', subject: 'a', tier: 'admin', cluster: 'c', startedAt: new Date() },
    driver,
    {
      idleSeconds: 600,
      idleWarnSeconds: 1,
      heartbeatSeconds: 60,
      maxSessionSeconds: 3600,
      maxWarnSeconds: 0,
      graceSeconds,
      bufferBytes: 1024,
    },
    pino({ level: 'silent' }),
  );
  const tap = new Tap();
  s.addTap(tap);
  const ws = new Socket();
  s.start(ws as unknown as WebSocket);
  return {
    s,
    tap,
    ws,
    out: (t: string) => handlers?.onOutput(1, Buffer.from(t)),
    resumed: () => resumed,
    end: () => end,
  };
}

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('session taps (recording, live watch)', () => {
  it('see every output byte, stdin and size; the exec pauses while a tap is not ready, and resumes after', async () => {
    const t = setup();
    await tick(10);
    expect(t.out('hello')).toBe(true);
    t.ws.emit('message', Buffer.from('ls\r'), true);
    t.ws.emit('message', Buffer.from(JSON.stringify({ type: 'resize', cols: 100, rows: 30 })), false);
    t.tap.ready = false;
    expect(t.out('more')).toBe(false);
    await tick(60);
    expect(t.resumed()).toBe(0);
    t.tap.ready = true;
    await tick(60);
    expect(t.resumed()).toBe(1);
    expect(t.tap.out).toEqual(['hello', 'more']);
    expect(t.tap.inp).toEqual(['ls\r']);
    expect(t.tap.sizes).toContain('100x30');
  });

  it('are closed once at the end, before the close record, which carries their fields', async () => {
    const t = setup();
    await tick(10);
    await t.s.end('exit', 0);
    await t.s.end('exit', 0);
    expect(t.tap.closed).toBe(1);
    expect(t.end()?.tapFields).toEqual({ recording_id: 'r1', recording_bytes: 3 });
  });

  it('notify sends a control frame to the operator (the watch banner)', async () => {
    const t = setup();
    await tick(10);
    t.s.notify({ type: 'watch', watchers: ['admin'] });
    expect(t.ws.frames).toContainEqual({ type: 'watch', watchers: ['admin'] });
    await t.s.end('exit', 0);
  });

  it('a resumed socket hears who is watching again', async () => {
    const t = setup(30);
    await tick(10);
    t.s.notify({ type: 'watch', watchers: ['admin'] });
    t.ws.readyState = 3;
    t.ws.emit('close');
    const again = new Socket();
    expect(t.s.resume(again as unknown as WebSocket, 0)).toBe(true);
    expect(again.frames).toContainEqual({ type: 'watch', watchers: ['admin'] });
    await t.s.end('exit', 0);
  });
});
