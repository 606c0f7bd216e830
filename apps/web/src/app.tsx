import { useEffect, useState } from 'react';

interface Meta {
  version: string;
  authMode: 'oidc' | 'dev';
  clusterShellEnabled: boolean;
}

/** Application shell: header with product name and version; pages arrive with the web issue. */
export function App(): React.JSX.Element {
  const [meta, setMeta] = useState<Meta | undefined>();
  const [error, setError] = useState<string | undefined>();

  useEffect(() => {
    fetch('/api/meta')
      .then(async (res) => {
        if (!res.ok) throw new Error(`GET /api/meta answered ${res.status}`);
        setMeta((await res.json()) as Meta);
      })
      .catch((err: unknown) => {
        setError(err instanceof Error ? err.message : String(err));
      });
  }, []);

  return (
    <main style={{ fontFamily: 'system-ui, sans-serif', padding: '1rem 2rem' }}>
      <h1>Periscope</h1>
      {meta && (
        <p data-testid="meta">
          version {meta.version} · sign-in {meta.authMode} · cluster shell{' '}
          {meta.clusterShellEnabled ? 'enabled' : 'disabled'}
        </p>
      )}
      {error && <p role="alert">Cannot reach the Periscope server: {error}</p>}
    </main>
  );
}
