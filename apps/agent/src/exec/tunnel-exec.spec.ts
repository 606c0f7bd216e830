import type { ExecChannel, ExecChannelHandlers, ExecTarget } from '@periscope/cluster-ops';
import {
  CHANNEL,
  Mux,
  RESET_CODE,
  type MuxStream,
  type StreamExit,
  type StreamHandlers,
} from '@periscope/protocol';
import pino from 'pino';
import { describe, expect, it } from 'vitest';

import { serveExecStream } from './tunnel-exec';

const WINDOW = 16 * 1024;
const log = pino({ level: 'silent' });

/** A cluster gateway whose exec is a script: it records stdin and says when its socket is "full". */
function fakeGateway(opts: { fail?: string; opening?: Promise<void> } = {}) {
  const state = {
    target: undefined as ExecTarget | undefined,
    handlers: undefined as ExecChannelHandlers | undefined,
    stdin: 0,
    full: false,
    closed: false,
    resized: [] as [number, number][],
    ended: false,
    /** what reached the exec, in order */
    log: [] as string[],
  };
  const gateway = {
    openExec: async (target: ExecTarget, handlers: ExecChannelHandlers): Promise<ExecChannel> => {
      if (opts.fail !== undefined) throw new Error(opts.fail);
      await opts.opening;
      state.target = target;
      state.handlers = handlers;
      return {
        protocol: 'v5.channel.k8s.io',
        write: (b) => {
          state.stdin += b.length;
          state.log.push(`stdin ${Buffer.from(b).toString()}`);
          return !state.full;
        },
        end: () => {
          state.ended = true;
          state.log.push('end');
        },
        resize: (c, r) => {
          state.resized.push([c, r]);
          state.log.push(`resize ${c}x${r}`);
        },
        resume: () => undefined,
        close: () => {
          state.closed = true;
        },
      };
    },
  };
  return { gateway, state };
}

/** A server mux and an agent mux on an in-memory link; the agent serves streams with `serveExecStream`. */
function tunnel(gateway: ReturnType<typeof fakeGateway>['gateway']) {
  const limits = { window: WINDOW };
  const server = new Mux('server', { limits });
  const agent = new Mux('agent', {
    limits,
    onOpen: (stream, open) => void serveExecStream(gateway, stream, open, log),
  });
  const join = (from: Mux, to: Mux): void => {
    from.attach({
      send: (b, payload) => {
        setImmediate(() => {
          to.receive(b, payload);
        });
      },
      splitData: false,
      queuedBytes: () => 0,
    });
  };
  join(server, agent);
  join(agent, server);
  return server;
}

function open(server: Mux, handlers: StreamHandlers = {}) {
  const seen = { opened: false, out: '', exit: undefined as StreamExit | undefined, closed: '' };
  const stream: MuxStream = server.open(
    {
      sessionId: 'sess-1',
      rid: 'rid-00000001',
      namespace: 'ns',
      pod: 'web-0',
      container: 'app',
      command: ['sh'],
      tty: true,
      stdin: true,
      cols: 100,
      rows: 30,
    },
    {
      onOpenOk: () => (seen.opened = true),
      onData: (ch, b) => {
        seen.out += Buffer.from(b).toString();
        stream.consumed(ch, b.length);
      },
      onExit: (e) => (seen.exit = e),
      onClose: (_c, reason) => (seen.closed = reason),
      ...handlers,
    },
  );
  return { stream, seen };
}

const tick = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, fn: () => T | undefined | false): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    await tick(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe(serveExecStream.name, () => {
  it('opens the exec through the cluster gateway and carries output, resize and the exit', async () => {
    const { gateway, state } = fakeGateway();
    const { stream, seen } = open(tunnel(gateway));
    await until('the stream to open', () => seen.opened);
    expect(state.target).toEqual({
      namespace: 'ns',
      pod: 'web-0',
      container: 'app',
      command: ['sh'],
      tty: true,
      stdin: true,
      sessionId: 'sess-1',
      auditId: 'rid-00000001',
      cols: 100,
      rows: 30,
    });
    expect(state.handlers?.onOutput(1, Buffer.from('hello'))).toBe(true);
    await until('output', () => seen.out === 'hello');
    stream.resize(120, 40);
    await until('the resize', () => state.resized.length === 1);
    expect(state.resized).toEqual([[120, 40]]);
    stream.end(CHANNEL.stdin);
    await until('the half-close', () => state.ended);
    state.handlers?.onExit({ exitCode: 3, status: 'Failure' });
    await until('the exit', () => seen.exit);
    expect(seen.exit).toMatchObject({ exitCode: 3 });
  });

  it('keeps what the server sends before the exec is open and hands it over in order', async () => {
    let opened!: () => void;
    const { gateway, state } = fakeGateway({ opening: new Promise<void>((r) => (opened = r)) });
    const { stream, seen } = open(tunnel(gateway));
    // The server may send at once: stdin, a resize and the half-close, all before the exec is up.
    stream.write(CHANNEL.stdin, Buffer.from('one '));
    stream.resize(90, 20);
    stream.write(CHANNEL.stdin, Buffer.from('two'));
    stream.end(CHANNEL.stdin);
    await tick(100);
    expect(state.log).toEqual([]);
    opened();
    await until('the stream to open', () => seen.opened);
    await until('the half-close', () => state.ended);
    // Stdin in order and whole, the half-close after it (a resize travels outside the data order).
    expect(state.log.filter((l) => l.startsWith('stdin'))).toEqual(['stdin one ', 'stdin two']);
    expect(state.log).toContain('resize 90x20');
    expect(state.log.at(-1)).toBe('end');
  });

  it('holds stdin credit while the exec socket is full, so the server stops; releases it once it drains', async () => {
    const { gateway, state } = fakeGateway();
    const { stream, seen } = open(tunnel(gateway));
    await until('the stream to open', () => seen.opened);
    state.full = true;
    const total = WINDOW * 4;
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        const n = Math.min(4096, total - sent);
        sent += n;
        if (!stream.write(CHANNEL.stdin, Buffer.alloc(n, 1))) return;
      }
    };
    stream.handlers.onWritable = pump;
    pump();
    await tick(200);
    // The exec took what one window allows and no more: its credit is held.
    expect(state.stdin).toBeGreaterThan(0);
    expect(state.stdin).toBeLessThanOrEqual(WINDOW);
    const stalled = state.stdin;
    await tick(100);
    expect(state.stdin).toBe(stalled);
    state.full = false;
    state.handlers?.onWritable?.();
    await until('all stdin to arrive', () => state.stdin === total);
  });

  it('closes the exec when the server resets the stream', async () => {
    const { gateway, state } = fakeGateway();
    const { stream, seen } = open(tunnel(gateway));
    await until('the stream to open', () => seen.opened);
    stream.reset(RESET_CODE.closedByPeer, 'closed by the server');
    await until('the exec to be closed', () => state.closed);
  });

  it('reports an exec that the gateway could not open, and an exec that broke', async () => {
    const failing = open(tunnel(fakeGateway({ fail: 'exec refused (HTTP 403): forbidden' }).gateway));
    await until('the stream to be reset', () => failing.seen.closed || undefined);
    expect(failing.seen.closed).toBe('exec refused (HTTP 403): forbidden');
    expect(failing.seen.opened).toBe(false);

    const { gateway, state } = fakeGateway();
    const broken = open(tunnel(gateway));
    await until('the stream to open', () => broken.seen.opened);
    state.handlers?.onError('exec connection lost');
    await until('the stream to be reset', () => broken.seen.closed || undefined);
    expect(broken.seen.closed).toBe('exec connection lost');
  });
});
