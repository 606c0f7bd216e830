import { SESSION_KIND } from '@periscope/protocol';
import { useState } from 'react';

import { Link } from '../router';
import { terminals } from '../terminal/store';
import type { Cluster, Pod } from '../types';
import { useApi } from '../use-api';
import { ConnectionBadge, Tags } from './connection';
import { shellSettingsLine } from './shell-settings';

export function ClusterPage({ name }: { name: string }): React.JSX.Element {
  const clusters = useApi<{ clusters: Cluster[] }>('/api/clusters', 15_000);
  const c = clusters.data?.clusters.find((x) => x.name === name);
  const [nsInput, setNsInput] = useState('');
  const [namespace, setNamespace] = useState('');
  const pods = useApi<{ pods: Pod[] }>(
    c
      ? `/api/clusters/${encodeURIComponent(name)}/pods${namespace ? `?namespace=${encodeURIComponent(namespace)}` : ''}`
      : undefined,
  );
  const [podFilter, setPodFilter] = useState('');

  if (clusters.error) {
    return (
      <div className="page">
        <p role="alert" className="error-text">
          {clusters.error.message}
        </p>
      </div>
    );
  }
  if (!clusters.data) return <div className="page panel-note">loading…</div>;
  if (!c) {
    return (
      <div className="page">
        <h1>{name}</h1>
        <p role="alert">
          No cluster named <code>{name}</code>. <Link to="/">Back to the fleet</Link>.
        </p>
      </div>
    );
  }

  const namespaces = [...new Set((pods.data?.pods ?? []).map((p) => p.namespace))].sort();
  const needle = podFilter.trim().toLowerCase();
  const shownPods = (pods.data?.pods ?? []).filter(
    (p) => needle === '' || `${p.namespace}/${p.name}`.toLowerCase().includes(needle),
  );

  return (
    <div className="page">
      <nav aria-label="breadcrumb" className="crumbs">
        <Link to="/">Fleet</Link> / <span aria-current="page">{c.name}</span>
      </nav>
      <div className="cluster-head">
        <h1>{c.name}</h1>
        <span className="badge neutral">{c.backend}</span>
        <ConnectionBadge c={c} />
        {c.environment && <span className="badge neutral">{c.environment}</span>}
        {Object.keys(c.tags).length > 0 && <Tags tags={c.tags} />}
        <span className="spacer" />
        {c.clusterShellEnabled ? (
          <button
            type="button"
            className="btn primary"
            title={
              c.clusterShellMode === 'kubectl'
                ? 'Open a cluster-wide kubectl-only shell (kubectl and helm commands) as you'
                : 'Open a cluster-wide kubectl shell (bash, kubectl, helm) as you'
            }
            onClick={() => {
              terminals.open({
                kind: SESSION_KIND.clusterShell,
                cluster: c.name,
                mode: c.clusterShellMode ?? 'bash',
              });
            }}
          >
            <span aria-hidden="true">⌨ </span>Shell
          </button>
        ) : (
          <span className="muted small shell-reason" data-testid="shell-reason">
            cluster shell: {c.clusterShellReason ?? 'not available'}
          </span>
        )}
      </div>
      {c.clusterShell && (
        <p className="muted small" data-testid="shell-settings">
          cluster shell{c.clusterShellEnabled && c.clusterShellMode ? ` (yours: ${c.clusterShellMode})` : ''}:{' '}
          {shellSettingsLine(c.clusterShell)}
        </p>
      )}

      <section aria-labelledby="pods-h">
        <div className="page-head">
          <h2 id="pods-h">Pods</h2>
          <form
            className="filters"
            aria-label="pod filters"
            onSubmit={(e) => {
              e.preventDefault();
              setNamespace(nsInput.trim());
            }}
          >
            <label>
              namespace
              <input
                list="ns-list"
                value={nsInput}
                placeholder="all namespaces"
                onChange={(e) => {
                  setNsInput(e.target.value);
                }}
              />
              <datalist id="ns-list">
                {namespaces.map((n) => (
                  <option key={n} value={n} />
                ))}
              </datalist>
            </label>
            <button type="submit" className="btn small">
              apply
            </button>
            <label>
              filter
              <input
                type="search"
                value={podFilter}
                placeholder="pod name"
                onChange={(e) => {
                  setPodFilter(e.target.value);
                }}
              />
            </label>
            <button type="button" className="btn small" onClick={pods.reload} disabled={pods.loading}>
              {pods.loading ? 'loading…' : 'refresh'}
            </button>
          </form>
        </div>
        {!c.execEnabled && <p className="muted small">Pod exec is disabled on this cluster.</p>}
        {pods.error && (
          <p role="alert" className="error-text">
            Pods could not be listed: {pods.error.message}
          </p>
        )}
        <table className="table" aria-label="pods">
          <thead>
            <tr>
              <th scope="col">namespace</th>
              <th scope="col">pod</th>
              <th scope="col">phase</th>
              <th scope="col">containers</th>
            </tr>
          </thead>
          <tbody>
            {shownPods.map((p) => (
              <tr key={`${p.namespace}/${p.name}`}>
                <td>{p.namespace}</td>
                <td className="strong">{p.name}</td>
                <td>
                  <span
                    className={`badge ${p.phase === 'Running' ? 'ok' : p.phase === 'Failed' ? 'bad' : 'neutral'}`}
                  >
                    {p.phase}
                  </span>
                </td>
                <td>
                  <ul className="containers">
                    {p.containers.map((ct) => (
                      <li key={ct}>
                        <code>{ct}</code>
                        {c.execEnabled && p.phase === 'Running' && (
                          <button
                            type="button"
                            className="btn small"
                            aria-label={`Open shell in ${p.name}/${ct}`}
                            onClick={() => {
                              terminals.open({
                                kind: SESSION_KIND.podExec,
                                cluster: c.name,
                                namespace: p.namespace,
                                pod: p.name,
                                container: ct,
                              });
                            }}
                          >
                            Open shell
                          </button>
                        )}
                      </li>
                    ))}
                  </ul>
                </td>
              </tr>
            ))}
            {pods.data && shownPods.length === 0 && (
              <tr>
                <td colSpan={4} className="muted">
                  No pods{namespace ? ` in ${namespace}` : ''} that you may list.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </section>
    </div>
  );
}
