import { useCallback, useEffect, useState } from 'react';

import { ApiError, errorText, get, post, setUnauthorizedHandler } from './api';
import { AgentsPage } from './pages/agents';
import { AuditPage } from './pages/audit';
import { ClusterPage } from './pages/cluster';
import { FleetPage } from './pages/fleet';
import { SessionsPage } from './pages/sessions';
import { ReplayPage } from './replay/replay-page';
import { WatchPage } from './replay/watch-page';
import { SignIn } from './pages/sign-in';
import { Link, match, useLocation } from './router';
import { Drawer } from './terminal/drawer';
import { useTerminals } from './terminal/use-terminals';
import { applyTheme, storedTheme, watchSystemTheme, type ThemeChoice } from './theme';
import type { Meta, WhoAmI } from './types';

type Auth =
  | { state: 'loading' }
  | { state: 'signed-out' }
  | { state: 'signed-in'; me: WhoAmI }
  | { state: 'error'; message: string };

/** Who is signed in, as the server sees it. */
async function loadAuth(): Promise<Auth> {
  try {
    return { state: 'signed-in', me: await get<WhoAmI>('/api/auth/whoami') };
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return { state: 'signed-out' };
    return { state: 'error', message: errorText(err) };
  }
}

export function App(): React.JSX.Element {
  const [auth, setAuth] = useState<Auth>({ state: 'loading' });
  const [theme, setTheme] = useState<ThemeChoice>(storedTheme);
  // After a sign-out the terminals stay on screen (ended, with the reason and their scrollback)
  // until the person closes them; only a drawer with no tabs goes away with the sign-in.
  const { tabs } = useTerminals();

  const refresh = useCallback(async (): Promise<void> => {
    setAuth(await loadAuth());
  }, []);

  useEffect(() => {
    let cancelled = false;
    void loadAuth().then((a) => {
      if (!cancelled) setAuth(a);
    });
    setUnauthorizedHandler(() => {
      setAuth({ state: 'signed-out' });
    });
    return () => {
      cancelled = true;
      setUnauthorizedHandler(undefined);
    };
  }, []);

  useEffect(() => {
    applyTheme(theme);
    return watchSystemTheme(() => {
      applyTheme(theme);
    });
  }, [theme]);

  const nextTheme: Record<ThemeChoice, ThemeChoice> = { system: 'light', light: 'dark', dark: 'system' };

  return (
    <div className="app">
      <a className="skip-link" href="#main">
        skip to content
      </a>
      <header className="app-header">
        <Link to="/" className="brand">
          <span aria-hidden="true">◉</span> Periscope
        </Link>
        {auth.state === 'signed-in' && <Nav me={auth.me} />}
        <div className="header-right">
          <button
            type="button"
            className="btn small"
            onClick={() => {
              setTheme(nextTheme[theme]);
            }}
            aria-label={`colour theme: ${theme}; switch to ${nextTheme[theme]}`}
            title="Switch theme (system → light → dark)"
          >
            theme: {theme}
          </button>
          {auth.state === 'signed-in' && (
            <WhoAmIBox
              me={auth.me}
              onSignedOut={() => {
                setAuth({ state: 'signed-out' });
              }}
            />
          )}
        </div>
      </header>
      <OriginWarning />
      <main id="main" className="app-main" tabIndex={-1}>
        {auth.state === 'loading' && <p className="panel-note">loading…</p>}
        {auth.state === 'error' && (
          <p role="alert" className="error-text">
            Cannot reach the Periscope server: {auth.message}
          </p>
        )}
        {auth.state === 'signed-out' && <SignIn onSignedIn={refresh} />}
        {auth.state === 'signed-in' && <Routes me={auth.me} />}
      </main>
      {(auth.state === 'signed-in' || tabs.length > 0) && <Drawer />}
    </div>
  );
}

/**
 * The server accepts terminal sockets only from its own origins; a page opened at another address
 * of the same server (127.0.0.1 instead of localhost, an internal name) would fail every terminal
 * with a bare socket error. Say so up front, with the address to use.
 */
function OriginWarning(): React.JSX.Element | null {
  const [meta, setMeta] = useState<Meta | undefined>();
  useEffect(() => {
    get<Meta>('/api/meta')
      .then(setMeta)
      .catch(() => undefined);
  }, []);
  if (!meta || meta.allowedOrigins.includes(window.location.origin)) return null;
  const there = `${meta.publicUrl}${window.location.pathname}${window.location.search}`;
  return (
    <p role="alert" className="origin-warning">
      Terminals will not connect from {window.location.origin}: this server accepts them only from{' '}
      {meta.allowedOrigins.join(', ')}. <a href={there}>Open Periscope at {meta.publicUrl}</a>
    </p>
  );
}

function Nav({ me }: { me: WhoAmI }): React.JSX.Element {
  const { path } = useLocation();
  const items: [string, string][] = [
    ['/', 'Fleet'],
    ['/audit', 'Audit'],
    ...(me.tier === 'admin'
      ? ([
          ['/sessions', 'Sessions'],
          ['/agents', 'Agents'],
        ] as [string, string][])
      : []),
  ];
  const current = (to: string): boolean =>
    to === '/' ? path === '/' || path.startsWith('/clusters/') : path.startsWith(to);
  return (
    <nav aria-label="main">
      <ul className="nav">
        {items.map(([to, label]) => (
          <li key={to}>
            <Link to={to} aria-current={current(to) ? 'page' : undefined}>
              {label}
            </Link>
          </li>
        ))}
      </ul>
    </nav>
  );
}

function WhoAmIBox({ me, onSignedOut }: { me: WhoAmI; onSignedOut: () => void }): React.JSX.Element {
  const { tabs } = useTerminals();
  const [busy, setBusy] = useState(false);
  const signOut = async (): Promise<void> => {
    const live = tabs.filter((t) => t.state.phase === 'open' || t.state.phase === 'reconnecting').length;
    if (
      live > 0 &&
      !window.confirm(
        `Signing out leaves ${live} open terminal${live === 1 ? '' : 's'} to end on the server. Sign out?`,
      )
    )
      return;
    setBusy(true);
    try {
      const answer = await post<{ endSessionUrl?: string | null } | undefined>('/api/auth/logout');
      if (answer?.endSessionUrl) {
        window.location.assign(answer.endSessionUrl);
        return;
      }
    } catch {
      // signed out anyway as far as this page is concerned
    }
    setBusy(false);
    onSignedOut();
  };
  return (
    <div className="whoami" data-testid="whoami">
      <span title={[me.email, ...me.groups].filter(Boolean).join(' · ')}>
        <strong>{me.subject}</strong>{' '}
        <span className={`badge tier-${me.tier ?? 'none'}`}>{me.tier ?? 'no tier'}</span>
      </span>
      <button type="button" className="btn small" onClick={() => void signOut()} disabled={busy}>
        sign out
      </button>
    </div>
  );
}

function Routes({ me }: { me: WhoAmI }): React.JSX.Element {
  const { path } = useLocation();
  if (path === '/' || path === '/clusters') return <FleetPage />;
  const c = match('/clusters/:name', path);
  if (c?.['name']) return <ClusterPage name={c['name']} />;
  if (path === '/audit') return <AuditPage me={me} />;
  if (path === '/agents') return <AgentsPage me={me} />;
  if (path === '/sessions') return <SessionsPage me={me} />;
  const replay = match('/sessions/:id/replay', path);
  if (replay?.['id']) return <ReplayPage sessionId={replay['id']} />;
  const watch = match('/sessions/:id/watch', path);
  if (watch?.['id']) return <WatchPage sessionId={watch['id']} />;
  return (
    <div className="page">
      <h1>Not found</h1>
      <p>
        Nothing lives at <code>{path}</code>. <Link to="/">Back to the fleet</Link>.
      </p>
    </div>
  );
}
