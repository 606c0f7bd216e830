/**
 * The open terminals of this page (cluster shells and pod execs), outliving route changes: each
 * tab asks the API for a session (POST), then owns one SessionClient. Output is buffered until the
 * lazily loaded xterm view attaches, so nothing is lost while the terminal code downloads.
 * Framework-free apart from the subscribe/snapshot pair React reads through useSyncExternalStore.
 */
import { CLIENT_ERROR, SESSION_KIND, type HelloFrame, type SessionKind } from '@periscope/protocol';

import { ApiError, del, errorText, post } from '../api';
import type { SessionTicket } from '../types';
import { SessionClient, wsOriginOf, type SessionState } from './session-client';

export interface TabSpec {
  kind: SessionKind;
  cluster: string;
  namespace?: string;
  pod?: string;
  container?: string;
  mode?: string;
}

export interface Tab {
  id: string;
  spec: TabSpec;
  label: string;
  openedAt: number;
  /** requesting: the POST is in flight; refused: the POST answered an error; session: a client exists */
  stage: 'requesting' | 'refused' | 'session';
  refusal?: ApiError;
  state: SessionState;
  sessionId?: string;
  hello?: HelloFrame;
  /** the latest provisioning progress (status frames) */
  progress?: { phase: string; message: string; at: number }[];
  /** epoch ms when the idle cut happens, while an idle warning is shown */
  idleCutAt?: number;
  /** epoch ms when the session's maximum length ends it, once the server warned (max_warn) */
  maxCutAt?: number;
  /** admins watching the session live (read-only), from the server's `watch` frames */
  watchers?: string[];
  notice?: { code: string; message: string };
  /** the first output byte arrived (the shell is up; provisioning progress is over) */
  outputSeen?: boolean;
}

export interface DrawerState {
  open: boolean;
  maximised: boolean;
  height: number;
}

export interface Snapshot {
  tabs: Tab[];
  activeId: string | undefined;
  drawer: DrawerState;
}

const HEIGHT_KEY = 'periscope.drawer.height';
export const MIN_DRAWER = 160;

export function tabLabel(spec: TabSpec): string {
  return spec.kind === SESSION_KIND.clusterShell ? 'shell' : `${spec.pod ?? '?'}/${spec.container ?? '?'}`;
}

let seq = 0;

export class TerminalStore {
  private snap: Snapshot;
  private readonly listeners = new Set<() => void>();
  private readonly clients = new Map<string, SessionClient>();
  private readonly sinks = new Map<string, (bytes: Uint8Array) => void>();
  private readonly pending = new Map<string, Uint8Array[]>();
  private readonly textGetters = new Map<string, () => string>();

  constructor() {
    const stored = Number(localStorage.getItem(HEIGHT_KEY));
    this.snap = {
      tabs: [],
      activeId: undefined,
      drawer: {
        open: false,
        maximised: false,
        height: Number.isFinite(stored) && stored >= MIN_DRAWER ? stored : 340,
      },
    };
  }

  subscribe = (l: () => void): (() => void) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };

  getSnapshot = (): Snapshot => this.snap;

  private set(next: Partial<Snapshot>): void {
    this.snap = { ...this.snap, ...next };
    for (const l of this.listeners) l();
  }

  private patch(id: string, fn: (t: Tab) => Partial<Tab>): void {
    const tabs = this.snap.tabs.map((t) => (t.id === id ? { ...t, ...fn(t) } : t));
    this.set({ tabs });
  }

  tab(id: string): Tab | undefined {
    return this.snap.tabs.find((t) => t.id === id);
  }

  client(id: string): SessionClient | undefined {
    return this.clients.get(id);
  }

  // ---- drawer ----
  setDrawer(d: Partial<DrawerState>): void {
    const drawer = { ...this.snap.drawer, ...d };
    if (d.height !== undefined) localStorage.setItem(HEIGHT_KEY, String(Math.round(d.height)));
    this.set({ drawer });
  }

  activate(id: string): void {
    this.set({ activeId: id, drawer: { ...this.snap.drawer, open: true } });
  }

  // ---- sessions ----
  /** Opens a new tab and asks the server for a session in it. */
  open(spec: TabSpec): string {
    const id = `t${++seq}`;
    const tab: Tab = {
      id,
      spec,
      label: tabLabel(spec),
      openedAt: Date.now(),
      stage: 'requesting',
      state: { phase: 'connecting' },
    };
    this.set({ tabs: [...this.snap.tabs, tab], activeId: id, drawer: { ...this.snap.drawer, open: true } });
    void this.request(id);
    return id;
  }

  /** Asks again in the same tab (after a refusal, or for a fresh session after an end). */
  retry(id: string): void {
    const t = this.tab(id);
    if (!t) return;
    this.clients.get(id)?.close();
    this.clients.delete(id);
    this.patch(id, () => ({
      stage: 'requesting',
      refusal: undefined,
      state: { phase: 'connecting' },
      progress: undefined,
      idleCutAt: undefined,
      maxCutAt: undefined,
      notice: undefined,
      hello: undefined,
      sessionId: undefined,
      outputSeen: undefined,
      openedAt: Date.now(),
    }));
    void this.request(id);
  }

  /** Ends a live session listed in a 429 answer, then asks again in this tab. */
  async closeOtherAndRetry(id: string, sessionId: string): Promise<void> {
    // A tab of this page may hold that session: end it cleanly there.
    for (const [tabId, c] of this.clients) {
      if (c.sessionId === sessionId && tabId !== id) c.close();
    }
    try {
      await del(`/api/sessions/${encodeURIComponent(sessionId)}`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) {
        this.patch(id, () => ({
          notice: {
            code: err instanceof ApiError ? err.code : CLIENT_ERROR.network,
            message: errorText(err),
          },
        }));
        return;
      }
    }
    this.retry(id);
  }

  close(id: string): void {
    this.clients.get(id)?.close();
    this.clients.delete(id);
    this.sinks.delete(id);
    this.pending.delete(id);
    this.textGetters.delete(id);
    const tabs = this.snap.tabs.filter((t) => t.id !== id);
    let activeId = this.snap.activeId;
    if (activeId === id) activeId = tabs[tabs.length - 1]?.id;
    this.set({
      tabs,
      activeId,
      drawer: tabs.length === 0 ? { ...this.snap.drawer, open: false, maximised: false } : this.snap.drawer,
    });
  }

  private async request(id: string): Promise<void> {
    const t = this.tab(id);
    if (!t) return;
    const s = t.spec;
    const path =
      s.kind === SESSION_KIND.clusterShell
        ? `/api/clusters/${encodeURIComponent(s.cluster)}/shell/sessions`
        : `/api/clusters/${encodeURIComponent(s.cluster)}/pods/${encodeURIComponent(s.namespace ?? '')}/${encodeURIComponent(s.pod ?? '')}/exec/sessions`;
    const body =
      s.kind === SESSION_KIND.clusterShell
        ? s.mode
          ? { mode: s.mode }
          : {}
        : { container: s.container, tty: true };
    let ticket: SessionTicket;
    try {
      ticket = await post<SessionTicket>(path, body);
    } catch (err) {
      if (!this.tab(id)) return;
      const e = err instanceof ApiError ? err : new ApiError(0, CLIENT_ERROR.network, errorText(err));
      this.patch(id, () => ({
        stage: 'refused',
        refusal: e,
        state: { phase: 'error', code: e.code, message: e.message },
      }));
      return;
    }
    if (!this.tab(id)) return;
    const wsOrigin = wsOriginOf(window.location);
    const client = new SessionClient({
      sessionId: ticket.sessionId,
      socketUrl: `${wsOrigin}${ticket.socketPath}`,
      wsOrigin,
      events: {
        onOutput: (bytes) => {
          if (this.tab(id)?.outputSeen !== true) this.patch(id, () => ({ outputSeen: true }));
          const sink = this.sinks.get(id);
          if (sink) sink(bytes);
          else {
            const q = this.pending.get(id) ?? [];
            q.push(bytes.slice());
            this.pending.set(id, q);
          }
        },
        onState: (state) => {
          this.patch(id, (tab) => ({
            state,
            ...(state.phase === 'closed' || state.phase === 'error' || state.phase === 'gone'
              ? { idleCutAt: undefined, maxCutAt: undefined }
              : {}),
            ...(state.phase === 'open' ? { notice: undefined } : {}),
            ...(tab.stage !== 'session' ? { stage: 'session' as const } : {}),
          }));
        },
        onHello: (hello) => {
          this.patch(id, () => ({ hello, sessionId: hello.sessionId }));
        },
        onStatus: (phase, message) => {
          this.patch(id, (tab) => ({
            progress: [...(tab.progress ?? []), { phase, message, at: Date.now() }].slice(-20),
          }));
        },
        onIdleWarn: (secondsRemaining) => {
          this.patch(id, () => ({ idleCutAt: Date.now() + secondsRemaining * 1000 }));
        },
        onMaxWarn: (secondsRemaining) => {
          this.patch(id, () => ({ maxCutAt: Date.now() + secondsRemaining * 1000 }));
        },
        onWatch: (watchers) => {
          this.patch(id, () => ({ watchers }));
        },
        onActivity: () => {
          if (this.tab(id)?.idleCutAt !== undefined) this.patch(id, () => ({ idleCutAt: undefined }));
        },
        onNotice: (code, message) => {
          this.patch(id, () => ({ notice: { code, message } }));
        },
      },
    });
    this.clients.set(id, client);
    this.patch(id, () => ({ stage: 'session', sessionId: ticket.sessionId }));
    client.connect();
  }

  // ---- the xterm view ----
  /** The view receives output from here on; buffered output is handed over first. */
  attachSink(id: string, sink: (bytes: Uint8Array) => void, getText: () => string): () => void {
    const q = this.pending.get(id);
    this.pending.delete(id);
    if (q) for (const b of q) sink(b);
    this.sinks.set(id, sink);
    this.textGetters.set(id, getText);
    return () => {
      if (this.sinks.get(id) === sink) this.sinks.delete(id);
      if (this.textGetters.get(id) === getText) this.textGetters.delete(id);
    };
  }

  /** For tests: drop every live socket as a network failure would. */
  dropConnections(): number {
    let n = 0;
    for (const c of this.clients.values()) if (c.dropConnection()) n++;
    return n;
  }

  /** For tests: the text of a tab's terminal buffer (scrollback included). */
  terminalText(id?: string): string {
    const key = id ?? this.snap.activeId;
    return key === undefined ? '' : (this.textGetters.get(key)?.() ?? '');
  }
}

export const terminals = new TerminalStore();

declare global {
  interface Window {
    /** set by the browser tests before the page's scripts run (Playwright's addInitScript) */
    __periscopeTestHooks?: boolean;
    __periscopeTest?: TestHooks;
  }
}

export interface TestHooks {
  dropConnections: () => number;
  terminalText: (id?: string) => string;
  receivedBytes: (id?: string) => number;
}

/**
 * Hooks for the browser tests: drop the sockets, read a terminal's text and byte count. They only
 * reach this page's own state, and the page installs them only when the test harness asked for
 * them before any of its scripts ran, so an ordinary page has no such global.
 */
export function installTestHooks(w: Window): void {
  if (w.__periscopeTestHooks !== true) return;
  w.__periscopeTest = {
    dropConnections: () => terminals.dropConnections(),
    terminalText: (id) => terminals.terminalText(id),
    receivedBytes: (id) => terminals.client(id ?? terminals.getSnapshot().activeId ?? '')?.receivedBytes ?? 0,
  };
}

installTestHooks(window);
