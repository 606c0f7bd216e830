import { useEffect, useState } from 'react';

import { errorText, get, post } from '../api';
import { useLocation } from '../router';
import type { AuthConfig } from '../types';

export function SignIn({ onSignedIn }: { onSignedIn: () => Promise<void> }): React.JSX.Element {
  const [config, setConfig] = useState<AuthConfig | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState<string | undefined>();
  const { href } = useLocation();

  useEffect(() => {
    get<AuthConfig>('/api/auth/config')
      .then(setConfig)
      .catch((err: unknown) => {
        setError(errorText(err));
      });
  }, []);

  const devLogin = async (subject: string): Promise<void> => {
    setBusy(subject);
    setError(undefined);
    try {
      await post('/api/auth/dev-login', { subject });
      await onSignedIn();
    } catch (err) {
      setError(errorText(err));
      setBusy(undefined);
    }
  };

  return (
    <div className="page sign-in">
      <h1>Sign in to Periscope</h1>
      {!config && !error && <p className="panel-note">loading…</p>}
      {config?.authMode === 'oidc' && (
        <p>
          <a className="btn primary" href={`/api/auth/login?returnTo=${encodeURIComponent(href)}`}>
            Sign in with {config.providerName ?? 'your identity provider'}
          </a>
        </p>
      )}
      {config?.authMode === 'dev' && (
        <>
          <p className="muted">
            Development sign-in: this server runs with <code>PERISCOPE_AUTH_MODE=dev</code> and only listens
            on loopback. Pick a user.
          </p>
          <ul className="user-list" aria-label="dev users">
            {(config.devUsers ?? []).map((u) => (
              <li key={u.subject}>
                <button
                  type="button"
                  className="btn"
                  disabled={busy !== undefined}
                  onClick={() => void devLogin(u.subject)}
                >
                  Sign in as <strong>{u.subject}</strong>
                  <span className="muted small"> ({u.groups.join(', ') || 'no groups'})</span>
                </button>
              </li>
            ))}
          </ul>
        </>
      )}
      {error && (
        <p role="alert" className="error-text">
          {error}
        </p>
      )}
    </div>
  );
}
