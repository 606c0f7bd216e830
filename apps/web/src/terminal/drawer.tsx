/**
 * The terminal drawer shared by cluster shells and pod execs: tabs, a status pill, an info
 * expander, banners (provisioning, idle warning, reconnecting, ended, errors with what to do), and
 * the lazily loaded xterm body. Resizable by its drag handle (mouse or arrow keys) and maximisable.
 */
import {
  lazy,
  Suspense,
  useEffect,
  useRef,
  useState,
  useSyncExternalStore,
  type KeyboardEvent,
  type PointerEvent,
} from 'react';

import { dateTime, mmss } from '../format';
import { useNow } from '../use-now';
import { closedText, helpFor } from './help';
import { MIN_DRAWER, terminals, type Tab } from './store';

const TerminalView = lazy(() => import('./terminal-view'));

export function useTerminals(): ReturnType<typeof terminals.getSnapshot> {
  return useSyncExternalStore(terminals.subscribe, terminals.getSnapshot);
}

type Tone = 'ok' | 'warn' | 'bad' | 'idle';

export function pill(tab: Tab, now: number): { text: string; tone: Tone } {
  if (tab.stage === 'requesting') return { text: 'requesting…', tone: 'warn' };
  if (tab.stage === 'refused' && tab.refusal)
    return { text: `${tab.refusal.code} · ${tab.refusal.message}`, tone: 'bad' };
  const s = tab.state;
  switch (s.phase) {
    case 'connecting': {
      const last = tab.progress?.at(-1);
      return { text: last ? `provisioning · ${last.message || last.phase}` : 'connecting…', tone: 'warn' };
    }
    case 'open': {
      const last = tab.progress?.at(-1);
      if (last && tab.outputSeen !== true)
        return { text: `provisioning · ${last.message || last.phase}`, tone: 'warn' };
      return { text: `connected · ${mmss(now - s.since)}`, tone: 'ok' };
    }
    case 'reconnecting':
      return { text: `reconnecting · ${s.attempt}/${s.maxAttempts}`, tone: 'warn' };
    case 'closed':
      return {
        text: closedText(s.reason, s.exitCode),
        tone: s.exitCode !== undefined && s.exitCode !== 0 ? 'bad' : 'idle',
      };
    case 'error':
      return { text: `${s.code} · ${s.message}`, tone: 'bad' };
    case 'gone':
      return { text: 'session ended · open a new one', tone: 'idle' };
  }
}

function maxHeight(): number {
  return Math.max(MIN_DRAWER, Math.round(window.innerHeight * 0.8));
}

export function Drawer(): React.JSX.Element | null {
  const snap = useTerminals();
  const { tabs, activeId, drawer } = snap;
  const [info, setInfo] = useState(false);
  const live = tabs.some(
    (t) => t.state.phase === 'open' || t.state.phase === 'connecting' || t.state.phase === 'reconnecting',
  );
  const now = useNow(1000, tabs.length > 0 && drawer.open);
  const drag = useRef<{ y: number; h: number } | undefined>(undefined);

  useEffect(() => {
    const onKey = (e: globalThis.KeyboardEvent): void => {
      if (
        (e.ctrlKey || e.metaKey) &&
        (e.key === '`' || e.code === 'Backquote') &&
        terminals.getSnapshot().tabs.length > 0
      ) {
        e.preventDefault();
        e.stopPropagation();
        terminals.setDrawer({ open: !terminals.getSnapshot().drawer.open });
      }
    };
    window.addEventListener('keydown', onKey, true);
    return () => {
      window.removeEventListener('keydown', onKey, true);
    };
  }, []);

  if (tabs.length === 0) return null;
  const active = tabs.find((t) => t.id === activeId) ?? tabs[0];
  if (!active) return null;

  if (!drawer.open) {
    const p = pill(active, now);
    return (
      <section className="drawer collapsed" aria-label="terminals">
        <button
          type="button"
          className="drawer-bar"
          onClick={() => {
            terminals.setDrawer({ open: true });
          }}
          aria-expanded="false"
        >
          <span className={`dot ${p.tone}`} aria-hidden="true" />
          <span>
            {tabs.length} terminal{tabs.length === 1 ? '' : 's'} · {active.label} · {p.text}
          </span>
          <span className="muted small">show (Ctrl+`)</span>
        </button>
      </section>
    );
  }

  const onPointerDown = (e: PointerEvent<HTMLDivElement>): void => {
    drag.current = { y: e.clientY, h: drawer.height };
    e.currentTarget.setPointerCapture(e.pointerId);
  };
  const onPointerMove = (e: PointerEvent<HTMLDivElement>): void => {
    if (!drag.current) return;
    const h = Math.min(maxHeight(), Math.max(MIN_DRAWER, drag.current.h + (drag.current.y - e.clientY)));
    terminals.setDrawer({ height: h, maximised: false });
  };
  const onPointerUp = (): void => {
    drag.current = undefined;
  };
  const onHandleKey = (e: KeyboardEvent<HTMLDivElement>): void => {
    const step = e.shiftKey ? 80 : 20;
    if (e.key === 'ArrowUp')
      terminals.setDrawer({ height: Math.min(maxHeight(), drawer.height + step), maximised: false });
    else if (e.key === 'ArrowDown')
      terminals.setDrawer({ height: Math.max(MIN_DRAWER, drawer.height - step), maximised: false });
    else return;
    e.preventDefault();
  };

  const p = pill(active, now);
  return (
    <section
      className={`drawer${drawer.maximised ? ' maximised' : ''}`}
      style={drawer.maximised ? undefined : { height: drawer.height }}
      aria-label="terminals"
    >
      <div
        className="drawer-handle"
        role="separator"
        aria-orientation="horizontal"
        aria-label="resize the terminal drawer"
        aria-valuenow={Math.round(drawer.height)}
        aria-valuemin={MIN_DRAWER}
        aria-valuemax={maxHeight()}
        tabIndex={0}
        onPointerDown={onPointerDown}
        onPointerMove={onPointerMove}
        onPointerUp={onPointerUp}
        onPointerCancel={onPointerUp}
        onKeyDown={onHandleKey}
        onDoubleClick={() => {
          terminals.setDrawer({ maximised: !drawer.maximised });
        }}
      />
      <div className="drawer-chrome">
        <div className="tabs" role="tablist" aria-label="open terminals">
          {tabs.map((t) => {
            const tp = pill(t, now);
            const selected = t.id === active.id;
            return (
              <div key={t.id} className={`tab${selected ? ' selected' : ''}`}>
                <button
                  type="button"
                  role="tab"
                  id={`tab-${t.id}`}
                  aria-selected={selected}
                  aria-controls={`panel-${t.id}`}
                  className="tab-button"
                  title={`${t.spec.cluster}${t.spec.namespace ? ` · ${t.spec.namespace}` : ''} · ${t.label} · ${tp.text}`}
                  onClick={() => {
                    terminals.activate(t.id);
                  }}
                >
                  <span className={`dot ${tp.tone}`} aria-hidden="true" />
                  <span className="tab-cluster">{t.spec.cluster}</span>
                  <span className="tab-label">{t.label}</span>
                </button>
                <button
                  type="button"
                  className="tab-close"
                  aria-label={`close ${t.label} on ${t.spec.cluster}`}
                  onClick={() => {
                    terminals.close(t.id);
                  }}
                >
                  ×
                </button>
              </div>
            );
          })}
        </div>
        <span
          className={`status-pill ${p.tone}`}
          role="status"
          aria-live="polite"
          data-testid="status-pill"
          title={p.text}
        >
          {p.text}
        </span>
        <div className="drawer-actions">
          <button
            type="button"
            className="btn small"
            aria-expanded={info}
            aria-controls={`info-${active.id}`}
            onClick={() => {
              setInfo(!info);
            }}
          >
            info
          </button>
          {(active.state.phase === 'open' ||
            active.state.phase === 'connecting' ||
            active.state.phase === 'reconnecting') &&
            active.stage === 'session' && (
              <button
                type="button"
                className="btn small"
                onClick={() => terminals.client(active.id)?.close()}
                title="End this session (the pod is deleted)"
              >
                end session
              </button>
            )}
          <button
            type="button"
            className="btn small"
            aria-pressed={drawer.maximised}
            onClick={() => {
              terminals.setDrawer({ maximised: !drawer.maximised });
            }}
          >
            {drawer.maximised ? 'restore' : 'maximise'}
          </button>
          <button
            type="button"
            className="btn small"
            aria-label="hide the terminal drawer (Ctrl+`)"
            onClick={() => {
              terminals.setDrawer({ open: false, maximised: false });
            }}
          >
            hide
          </button>
        </div>
      </div>
      {tabs.map((t) => (
        <TabPanel
          key={t.id}
          tab={t}
          active={t.id === active.id}
          info={info && t.id === active.id}
          now={now}
        />
      ))}
      {!live && tabs.length > 0 && <span className="sr-only">no live terminal</span>}
    </section>
  );
}

function TabPanel({
  tab,
  active,
  info,
  now,
}: {
  tab: Tab;
  active: boolean;
  info: boolean;
  now: number;
}): React.JSX.Element {
  const s = tab.state;
  const kind = tab.spec.kind;
  const hasTerminal = tab.stage === 'session';
  return (
    <div
      className="tab-panel"
      role="tabpanel"
      id={`panel-${tab.id}`}
      aria-labelledby={`tab-${tab.id}`}
      hidden={!active}
    >
      {info && <InfoGrid tab={tab} />}
      <Banners tab={tab} now={now} />
      {tab.stage === 'refused' && tab.refusal && <Refusal tab={tab} />}
      {tab.stage === 'requesting' && (
        <p className="panel-note">
          asking the server for a {kind === 'cluster_shell' ? 'cluster shell' : 'pod exec'} session…
        </p>
      )}
      {hasTerminal &&
        (s.phase === 'connecting' || s.phase === 'open') &&
        tab.outputSeen !== true &&
        (tab.progress?.length ?? 0) > 0 && (
          <ol className="progress" aria-label="provisioning progress">
            {tab.progress?.map((p, i) => (
              <li key={i}>
                <span className="muted small">{p.phase}</span> {p.message}
              </li>
            ))}
          </ol>
        )}
      {hasTerminal && (
        <Suspense fallback={<p className="panel-note">loading terminal…</p>}>
          <TerminalView tabId={tab.id} active={active} />
        </Suspense>
      )}
    </div>
  );
}

function InfoGrid({ tab }: { tab: Tab }): React.JSX.Element {
  const h = tab.hello;
  const shell = tab.spec.kind === 'cluster_shell';
  const rows: [string, string][] = [
    ['kind', shell ? 'cluster shell' : 'pod exec'],
    ...(shell ? ([['mode', h?.mode ?? tab.spec.mode ?? 'bash']] as [string, string][]) : []),
    ['cluster', tab.spec.cluster],
    ...(shell
      ? ([['scope', '(cluster-scoped)']] as [string, string][])
      : ([
          ['namespace', h?.namespace ?? tab.spec.namespace ?? ''],
          ['pod', h?.pod ?? tab.spec.pod ?? ''],
          ['container', h?.container ?? tab.spec.container ?? '(resolving…)'],
        ] as [string, string][])),
    ['session id', tab.sessionId ?? '(awaiting hello)'],
    ['opened', dateTime(new Date(tab.openedAt).toISOString())],
    ['output received', `${terminals.client(tab.id)?.receivedBytes ?? 0} bytes`],
  ];
  return (
    <dl className="info-grid" id={`info-${tab.id}`} aria-label="session details">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

function Banners({ tab, now }: { tab: Tab; now: number }): React.JSX.Element | null {
  const s = tab.state;
  const client = terminals.client(tab.id);
  if (tab.idleCutAt !== undefined && s.phase === 'open') {
    const left = Math.max(0, Math.ceil((tab.idleCutAt - now) / 1000));
    return (
      <div className="banner warn" role="alert">
        <span>
          session will close in <strong>{left}s</strong> due to inactivity. Type any key, or
        </span>
        <button type="button" className="btn small" onClick={() => client?.keepAlive()}>
          keep alive
        </button>
      </div>
    );
  }
  if (s.phase === 'reconnecting') {
    return (
      <div className="banner warn delayed" role="status">
        <span>
          connection lost — reconnecting (attempt {s.attempt}/{s.maxAttempts}); the session waits on the
          server, nothing you typed or saw is lost.
        </span>
        <button type="button" className="btn small" onClick={() => client?.retryNow()}>
          retry now
        </button>
        <button type="button" className="btn small" onClick={() => client?.giveUp()}>
          give up
        </button>
      </div>
    );
  }
  if (s.phase === 'gone') {
    const help = helpFor('E_SESSION_GONE', tab.spec.kind);
    return (
      <div className="banner bad" role="alert">
        <span>
          <strong>{help.title}</strong> — {s.message || help.fix}
        </span>
        <button
          type="button"
          className="btn small primary"
          onClick={() => {
            terminals.retry(tab.id);
          }}
        >
          open a new session
        </button>
      </div>
    );
  }
  if (s.phase === 'error' && tab.stage === 'session') {
    const help = helpFor(s.code, tab.spec.kind);
    return (
      <div className="banner bad" role="alert">
        <div>
          <strong>{help.title}</strong> <code>{s.code}</code>
          {s.message && <div className="small">{s.message}</div>}
          <div className="small">{help.fix}</div>
        </div>
        <button
          type="button"
          className="btn small"
          onClick={() => {
            terminals.retry(tab.id);
          }}
        >
          open a new session
        </button>
      </div>
    );
  }
  if (s.phase === 'closed') {
    return (
      <div className="banner idle" role="status">
        <span>
          {closedText(s.reason, s.exitCode)} — the session pod is gone; scrollback stays until you close the
          tab.
        </span>
        <button
          type="button"
          className="btn small"
          onClick={() => {
            terminals.retry(tab.id);
          }}
        >
          open a new session
        </button>
      </div>
    );
  }
  if (tab.notice) {
    return (
      <div className="banner warn" role="status">
        <span>
          <code>{tab.notice.code}</code> {tab.notice.message}
        </span>
      </div>
    );
  }
  return null;
}

function Refusal({ tab }: { tab: Tab }): React.JSX.Element | null {
  const e = tab.refusal;
  const [busy, setBusy] = useState<string | undefined>();
  if (!e) return null;
  const help = helpFor(e.code, tab.spec.kind);
  const sessions = e.activeSessions;
  return (
    <div className="refusal" role="alert">
      <h3>
        {help.title}{' '}
        <code>
          {e.status > 0 ? `${e.status} ` : ''}
          {e.code}
        </code>
      </h3>
      <p>{e.message}</p>
      <p className="muted">{help.fix}</p>
      {(e.code === 'E_CAP_USER' || e.code === 'E_CAP_CLUSTER') && sessions.length > 0 && (
        <table className="table compact" aria-label="your active sessions">
          <thead>
            <tr>
              <th>session</th>
              <th>kind</th>
              <th>cluster</th>
              <th>started</th>
              <th>
                <span className="sr-only">action</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {sessions.map((a) => (
              <tr key={a.sessionId}>
                <td>
                  <code>{a.sessionId.slice(0, 8)}</code>
                </td>
                <td>{a.kind ?? 'cluster_shell'}</td>
                <td>{a.cluster}</td>
                <td>{dateTime(a.startedAt)}</td>
                <td>
                  <button
                    type="button"
                    className="btn small"
                    disabled={busy !== undefined}
                    onClick={() => {
                      setBusy(a.sessionId);
                      void terminals.closeOtherAndRetry(tab.id, a.sessionId).finally(() => {
                        setBusy(undefined);
                      });
                    }}
                  >
                    {busy === a.sessionId ? 'closing…' : 'close it and retry'}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <button
        type="button"
        className="btn small"
        onClick={() => {
          terminals.retry(tab.id);
        }}
      >
        retry
      </button>
    </div>
  );
}
