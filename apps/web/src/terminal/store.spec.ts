/**
 * The terminal store without React or a browser: the API calls are mocked, the browser globals the
 * store touches (localStorage, window.location, WebSocket) are small doubles, and the real
 * SessionClient runs over a fake socket the test plays the server on.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

const env = vi.hoisted(() => {
  const storage = new Map<string, string>();
  const g = globalThis as Record<string, unknown>;
  g['localStorage'] = {
    getItem: (k: string) => storage.get(k) ?? null,
    setItem: (k: string, v: string) => {
      storage.set(k, v);
    },
    removeItem: (k: string) => {
      storage.delete(k);
    },
  };
  g['window'] = { location: { protocol: 'https:', host: 'periscope.example.com' } };

  /** A WebSocket double; `sockets` lists every one the store opened, oldest first. */
  class FakeWebSocket {
    static readonly sockets: FakeWebSocket[] = [];
    binaryType = 'blob';
    readyState = 0;
    onopen: ((ev: unknown) => unknown) | null = null;
    onmessage: ((ev: { data: unknown }) => unknown) | null = null;
    onclose: ((ev: { code: number; reason: string }) => unknown) | null = null;
    onerror: ((ev: unknown) => unknown) | null = null;
    readonly sent: (string | ArrayBuffer)[] = [];
    closedWith: { code?: number; reason?: string } | undefined;
    constructor(readonly url: string) {
      FakeWebSocket.sockets.push(this);
    }
    send(data: string | ArrayBuffer): void {
      this.sent.push(data);
    }
    close(code?: number, reason?: string): void {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }
    // --- the server side ---
    hello(sessionId: string): void {
      this.readyState = 1;
      this.text({ type: 'hello', sessionId, kind: 'cluster_shell', cluster: 'local' });
    }
    text(frame: Record<string, unknown>): void {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }
    bytes(s: string): void {
      this.onmessage?.({ data: new TextEncoder().encode(s).buffer });
    }
    drop(code = 1006): void {
      this.readyState = 3;
      this.onclose?.({ code, reason: '' });
    }
    controlFrames(): unknown[] {
      return this.sent.filter((s): s is string => typeof s === 'string').map((s) => JSON.parse(s) as unknown);
    }
  }
  g['WebSocket'] = FakeWebSocket;
  return { storage, FakeWebSocket };
});

vi.mock('../api', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../api')>()),
  post: vi.fn(),
  del: vi.fn(),
}));

import { ApiError, del, post } from '../api';
import type { SessionTicket } from '../types';
import {
  installTestHooks,
  MIN_DRAWER,
  tabLabel,
  TerminalStore,
  terminals,
  type Tab,
  type TabSpec,
} from './store';

const postMock = vi.mocked(post);
const delMock = vi.mocked(del);
type Socket = InstanceType<typeof env.FakeWebSocket>;

const SHELL: TabSpec = { kind: 'cluster_shell', cluster: 'prod eu', mode: 'bash' };
const EXEC: TabSpec = {
  kind: 'pod_exec',
  cluster: 'local',
  namespace: 'app',
  pod: 'web/0',
  container: 'nginx',
};

function ticket(sessionId: string): SessionTicket {
  return {
    sessionId,
    ticket: `tk-${sessionId}`,
    expiresAt: '2030-01-01T00:00:00Z',
    socketPath: `/api/clusters/x/shell?ticket=tk-${sessionId}`,
  };
}

/** Lets the mocked POST answer and the store act on it. */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

function lastSocket(): Socket {
  const s = env.FakeWebSocket.sockets.at(-1);
  if (!s) throw new Error('no socket opened');
  return s;
}

/** A store with one tab whose session is open (hello received); answers the tab id and its socket. */
async function openSession(store: TerminalStore, sessionId = 's-1', spec: TabSpec = SHELL) {
  postMock.mockResolvedValueOnce(ticket(sessionId));
  const id = store.open(spec);
  await settle();
  const socket = lastSocket();
  socket.hello(sessionId);
  return { id, socket, tab: (): Tab => store.tab(id)! };
}

beforeEach(() => {
  env.storage.clear();
  env.FakeWebSocket.sockets.length = 0;
  postMock.mockReset();
  delMock.mockReset();
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe(tabLabel.name, () => {
  it('names a shell "shell" and an exec by pod/container', () => {
    expect(tabLabel(SHELL)).toBe('shell');
    expect(tabLabel(EXEC)).toBe('web/0/nginx');
    expect(tabLabel({ kind: 'pod_exec', cluster: 'c' })).toBe('?/?');
  });
});

describe(TerminalStore.name, () => {
  describe('drawer', () => {
    it('starts closed at the remembered height, or 340 when none is usable', () => {
      expect(new TerminalStore().getSnapshot().drawer).toEqual({
        open: false,
        maximised: false,
        height: 340,
      });
      env.storage.set('periscope.drawer.height', '500');
      expect(new TerminalStore().getSnapshot().drawer.height).toBe(500);
      env.storage.set('periscope.drawer.height', String(MIN_DRAWER - 1));
      expect(new TerminalStore().getSnapshot().drawer.height).toBe(340);
      env.storage.set('periscope.drawer.height', 'tall');
      expect(new TerminalStore().getSnapshot().drawer.height).toBe(340);
    });

    it('remembers a new height (rounded) and notifies subscribers with a new snapshot', () => {
      const store = new TerminalStore();
      const before = store.getSnapshot();
      const seen = vi.fn();
      const unsubscribe = store.subscribe(seen);
      store.setDrawer({ height: 412.6, maximised: true });
      expect(env.storage.get('periscope.drawer.height')).toBe('413');
      expect(store.getSnapshot()).not.toBe(before);
      expect(store.getSnapshot().drawer).toEqual({ open: false, maximised: true, height: 412.6 });
      expect(seen).toHaveBeenCalledTimes(1);
      unsubscribe();
      store.setDrawer({ open: true });
      expect(seen).toHaveBeenCalledTimes(1);
      // a change without a height leaves the stored one alone
      expect(env.storage.get('periscope.drawer.height')).toBe('413');
    });
  });

  describe('opening a session', () => {
    it('adds an active tab, opens the drawer and asks for a cluster shell', async () => {
      const store = new TerminalStore();
      postMock.mockResolvedValueOnce(ticket('s-1'));
      const id = store.open(SHELL);
      const snap = store.getSnapshot();
      expect(snap.activeId).toBe(id);
      expect(snap.drawer.open).toBe(true);
      expect(store.tab(id)).toMatchObject({
        spec: SHELL,
        label: 'shell',
        stage: 'requesting',
        state: { phase: 'connecting' },
      });
      expect(postMock).toHaveBeenCalledWith('/api/clusters/prod%20eu/shell/sessions', { mode: 'bash' });
      await settle();
      expect(store.tab(id)).toMatchObject({ stage: 'session', sessionId: 's-1' });
      expect(store.client(id)?.sessionId).toBe('s-1');
      // the socket goes to the page's origin, wss for https
      expect(lastSocket().url).toBe('wss://periscope.example.com/api/clusters/x/shell?ticket=tk-s-1');
    });

    it('asks for a pod exec with encoded path parts, the container and a TTY', async () => {
      const store = new TerminalStore();
      postMock.mockResolvedValueOnce(ticket('s-2'));
      store.open(EXEC);
      expect(postMock).toHaveBeenCalledWith('/api/clusters/local/pods/app/web%2F0/exec/sessions', {
        container: 'nginx',
        tty: true,
      });
      await settle();
      postMock.mockResolvedValueOnce(ticket('s-3'));
      store.open({ kind: 'cluster_shell', cluster: 'c' });
      expect(postMock).toHaveBeenLastCalledWith('/api/clusters/c/shell/sessions', {});
    });

    it('gives every tab its own id', () => {
      const store = new TerminalStore();
      postMock.mockReturnValue(new Promise(() => undefined));
      const a = store.open(SHELL);
      const b = store.open(SHELL);
      expect(a).not.toBe(b);
      expect(store.getSnapshot().tabs.map((t) => t.id)).toEqual([a, b]);
      expect(store.getSnapshot().activeId).toBe(b);
    });

    it('shows a refusal with the server code, or E_NETWORK when the server was not reached', async () => {
      const store = new TerminalStore();
      postMock.mockRejectedValueOnce(new ApiError(429, 'E_CAP_USER', 'too many sessions'));
      const capped = store.open(SHELL);
      postMock.mockRejectedValueOnce(new TypeError('Failed to fetch'));
      const offline = store.open(SHELL);
      await settle();
      expect(store.tab(capped)).toMatchObject({
        stage: 'refused',
        refusal: { status: 429, code: 'E_CAP_USER' },
        state: { phase: 'error', code: 'E_CAP_USER', message: 'too many sessions' },
      });
      expect(store.tab(offline)).toMatchObject({
        stage: 'refused',
        refusal: { status: 0, code: 'E_NETWORK', message: 'Failed to fetch' },
      });
      expect(env.FakeWebSocket.sockets).toHaveLength(0);
    });

    it('opens no socket for a tab closed while its request was in flight', async () => {
      const store = new TerminalStore();
      let answer: (t: SessionTicket) => void = () => undefined;
      postMock.mockReturnValueOnce(
        new Promise((r) => {
          answer = r;
        }),
      );
      const id = store.open(SHELL);
      store.close(id);
      answer(ticket('s-1'));
      await settle();
      expect(env.FakeWebSocket.sockets).toHaveLength(0);
      expect(store.client(id)).toBeUndefined();
    });
  });

  describe('session events', () => {
    it('records the hello, progress (the latest 20) and the open state', async () => {
      const store = new TerminalStore();
      postMock.mockResolvedValueOnce(ticket('s-1'));
      const id = store.open(SHELL);
      await settle();
      const s = lastSocket();
      for (let i = 0; i < 25; i++) s.text({ type: 'status', phase: 'pod', message: `step ${i}` });
      const progress = store.tab(id)?.progress ?? [];
      expect(progress).toHaveLength(20);
      expect(progress[0]?.message).toBe('step 5');
      expect(progress.at(-1)).toMatchObject({ phase: 'pod', message: 'step 24' });
      s.hello('s-1b');
      expect(store.tab(id)).toMatchObject({
        sessionId: 's-1b',
        hello: { sessionId: 's-1b', cluster: 'local' },
        state: { phase: 'open' },
      });
    });

    it('buffers output until the view attaches, then hands it over in order, once', async () => {
      const store = new TerminalStore();
      const { id, socket, tab } = await openSession(store);
      expect(tab().outputSeen).toBeUndefined();
      socket.bytes('one ');
      socket.bytes('two ');
      expect(tab().outputSeen).toBe(true);
      const got: string[] = [];
      const dec = new TextDecoder();
      const sink = (b: Uint8Array): void => {
        got.push(dec.decode(b));
      };
      const detach = store.attachSink(id, sink, () => 'screen');
      expect(got).toEqual(['one ', 'two ']);
      socket.bytes('three');
      expect(got).toEqual(['one ', 'two ', 'three']);
      expect(store.terminalText(id)).toBe('screen');
      expect(store.terminalText()).toBe('screen'); // the active tab
      detach();
      expect(store.terminalText(id)).toBe('');
      // output while no view is attached waits for the next one
      socket.bytes('four');
      const again: string[] = [];
      store.attachSink(
        id,
        (b) => again.push(dec.decode(b)),
        () => '',
      );
      expect(again).toEqual(['four']);
      expect(got).toHaveLength(3);
    });

    it('a stale detach leaves the newer view attached', async () => {
      const store = new TerminalStore();
      const { id, socket } = await openSession(store);
      const first: number[] = [];
      const second: number[] = [];
      const detachFirst = store.attachSink(
        id,
        (b) => first.push(b.length),
        () => 'first',
      );
      store.attachSink(
        id,
        (b) => second.push(b.length),
        () => 'second',
      );
      detachFirst();
      socket.bytes('xy');
      expect(second).toEqual([2]);
      expect(first).toEqual([]);
      expect(store.terminalText(id)).toBe('second');
    });

    it('shows the idle warning until activity, and drops it when the session ends', async () => {
      vi.spyOn(Date, 'now').mockReturnValue(1_000_000);
      const store = new TerminalStore();
      const { socket, tab } = await openSession(store);
      socket.text({ type: 'idle_warn', secondsRemaining: 30 });
      expect(tab().idleCutAt).toBe(1_030_000);
      socket.bytes('x');
      expect(tab().idleCutAt).toBeUndefined();
      socket.text({ type: 'idle_warn', secondsRemaining: 10 });
      expect(tab().idleCutAt).toBe(1_010_000);
      socket.text({ type: 'closed', reason: 'idle' });
      expect(tab()).toMatchObject({ idleCutAt: undefined, state: { phase: 'closed', reason: 'idle' } });
    });

    it('keeps the max-length warning through activity, and drops it when the session ends', async () => {
      vi.spyOn(Date, 'now').mockReturnValue(1_000_000);
      const store = new TerminalStore();
      const { socket, tab } = await openSession(store);
      socket.text({ type: 'max_warn', secondsRemaining: 300 });
      expect(tab().maxCutAt).toBe(1_300_000);
      socket.bytes('x');
      expect(tab().maxCutAt).toBe(1_300_000);
      socket.text({ type: 'closed', reason: 'max_duration' });
      expect(tab()).toMatchObject({
        maxCutAt: undefined,
        state: { phase: 'closed', reason: 'max_duration' },
      });
    });

    it('shows a retryable error as a notice until the session is open again', async () => {
      const store = new TerminalStore();
      const { socket, tab } = await openSession(store);
      socket.text({ type: 'error', code: 'E_STREAM', message: 'stream hiccup', retryable: true });
      expect(tab().notice).toEqual({ code: 'E_STREAM', message: 'stream hiccup' });
      expect(tab().state.phase).toBe('open');
      socket.drop();
      expect(tab().state.phase).toBe('reconnecting');
      expect(tab().notice).toBeDefined();
      store.client(tab().id)?.retryNow();
      lastSocket().hello('s-1');
      expect(tab().notice).toBeUndefined();
    });
  });

  describe('retry and close', () => {
    it('retry ends the old session and asks again from a clean tab', async () => {
      const now = vi.spyOn(Date, 'now').mockReturnValue(5000);
      const store = new TerminalStore();
      const { id, socket, tab } = await openSession(store);
      socket.text({ type: 'status', phase: 'pod', message: 'up' });
      socket.bytes('$ ');
      socket.text({ type: 'error', code: 'E_STREAM', message: 'x', retryable: true });
      const old = store.client(id);
      now.mockReturnValue(9000);
      postMock.mockResolvedValueOnce(ticket('s-2'));
      store.retry(id);
      expect(socket.controlFrames()).toContainEqual({ type: 'close' });
      expect(tab()).toMatchObject({
        stage: 'requesting',
        state: { phase: 'connecting' },
        openedAt: 9000,
        progress: undefined,
        notice: undefined,
        hello: undefined,
        sessionId: undefined,
        outputSeen: undefined,
        refusal: undefined,
      });
      expect(store.client(id)).toBeUndefined();
      await settle();
      expect(store.client(id)).not.toBe(old);
      expect(tab()).toMatchObject({ stage: 'session', sessionId: 's-2' });
      // the old client's end never reaches the tab any more
      expect(old?.state.phase).toBe('closed');
      expect(tab().state.phase).toBe('connecting');
    });

    it('retry of an unknown tab does nothing', () => {
      const store = new TerminalStore();
      store.retry('nope');
      expect(postMock).not.toHaveBeenCalled();
      expect(store.getSnapshot().tabs).toEqual([]);
    });

    it('close ends the session, activates the last tab left, and closes the drawer after the last', async () => {
      const store = new TerminalStore();
      const a = await openSession(store, 's-a');
      const b = await openSession(store, 's-b');
      const c = await openSession(store, 's-c');
      store.setDrawer({ maximised: true });
      store.activate(b.id);
      store.close(b.id);
      expect(b.socket.controlFrames()).toContainEqual({ type: 'close' });
      expect(b.socket.closedWith?.code).toBe(1000);
      expect(store.getSnapshot().activeId).toBe(c.id);
      store.close(a.id);
      expect(store.getSnapshot().activeId).toBe(c.id);
      expect(store.getSnapshot().drawer).toMatchObject({ open: true, maximised: true });
      store.close(c.id);
      expect(store.getSnapshot()).toMatchObject({
        tabs: [],
        activeId: undefined,
        drawer: { open: false, maximised: false },
      });
      expect(store.client(c.id)).toBeUndefined();
    });
  });

  describe('closing another session to make room', () => {
    it('ends it on the server (and in this page), then asks again', async () => {
      const store = new TerminalStore();
      const other = await openSession(store, 'live/1');
      postMock.mockRejectedValueOnce(new ApiError(429, 'E_CAP_USER', 'cap'));
      const id = store.open(SHELL);
      await settle();
      delMock.mockResolvedValueOnce(undefined);
      postMock.mockResolvedValueOnce(ticket('s-new'));
      await store.closeOtherAndRetry(id, 'live/1');
      expect(other.socket.controlFrames()).toContainEqual({ type: 'close' });
      expect(delMock).toHaveBeenCalledWith('/api/sessions/live%2F1');
      await settle();
      expect(store.tab(id)).toMatchObject({ stage: 'session', sessionId: 's-new' });
    });

    it('treats an already ended session (404) as done', async () => {
      const store = new TerminalStore();
      postMock.mockRejectedValueOnce(new ApiError(429, 'E_CAP_USER', 'cap'));
      const id = store.open(SHELL);
      await settle();
      delMock.mockRejectedValueOnce(new ApiError(404, 'E_NOT_FOUND', 'no such session'));
      postMock.mockResolvedValueOnce(ticket('s-new'));
      await store.closeOtherAndRetry(id, 'gone');
      await settle();
      expect(postMock).toHaveBeenCalledTimes(2);
      expect(store.tab(id)).toMatchObject({ stage: 'session', sessionId: 's-new', notice: undefined });
    });

    it('keeps the refusal and shows why when the session could not be ended', async () => {
      const store = new TerminalStore();
      postMock.mockRejectedValueOnce(new ApiError(429, 'E_CAP_USER', 'cap'));
      const id = store.open(SHELL);
      await settle();
      delMock.mockRejectedValueOnce(new ApiError(403, 'E_FORBIDDEN', 'not yours'));
      await store.closeOtherAndRetry(id, 'x');
      expect(store.tab(id)).toMatchObject({
        stage: 'refused',
        notice: { code: 'E_FORBIDDEN', message: 'not yours' },
      });
      delMock.mockRejectedValueOnce(new TypeError('Failed to fetch'));
      await store.closeOtherAndRetry(id, 'x');
      expect(store.tab(id)?.notice).toEqual({ code: 'E_NETWORK', message: 'Failed to fetch' });
      expect(postMock).toHaveBeenCalledTimes(1);
    });
  });

  describe('test hooks', () => {
    it('drops every live socket without a close frame, and the sessions resume', async () => {
      const store = new TerminalStore();
      const a = await openSession(store, 's-a');
      const b = await openSession(store, 's-b');
      store.close(b.id);
      expect(store.dropConnections()).toBe(1);
      expect(a.socket.closedWith?.code).toBe(4000);
      expect(a.socket.controlFrames()).not.toContainEqual({ type: 'close' });
      a.socket.drop(4000);
      expect(a.tab().state.phase).toBe('reconnecting');
    });

    it('are not on an ordinary page', () => {
      const w = {} as Window;
      installTestHooks(w);
      expect(w.__periscopeTest).toBeUndefined();
      expect((globalThis as { window?: Window }).window?.__periscopeTest).toBeUndefined();
    });

    it('are on the window when the browser tests ask for them first, reading the page store', async () => {
      const w = { __periscopeTestHooks: true } as Window;
      installTestHooks(w);
      const hooks = w.__periscopeTest;
      expect(hooks).toBeDefined();
      expect(hooks?.receivedBytes()).toBe(0);
      const { id, socket } = await openSession(terminals, 's-w');
      socket.bytes('12345');
      expect(hooks?.receivedBytes()).toBe(5);
      expect(hooks?.receivedBytes(id)).toBe(5);
      terminals.attachSink(
        id,
        () => undefined,
        () => 'on screen',
      );
      expect(hooks?.terminalText()).toBe('on screen');
      expect(hooks?.dropConnections()).toBe(1);
      terminals.close(id);
    });
  });
});
