import { useMemo } from 'react';

import { Link, navigate, useLocation } from '../router';
import type { Cluster } from '../types';
import { useApi } from '../use-api';
import { ConnectionBadge, Tags } from './connection';

const STATES = ['direct', 'connected', 'disconnected', 'never-connected', 'unavailable'] as const;

export function FleetPage(): React.JSX.Element {
  const { data, error, loading, reload } = useApi<{ clusters: Cluster[] }>('/api/clusters', 15_000);
  const { search } = useLocation();
  const q = search.get('q') ?? '';
  const state = search.get('state') ?? '';
  const backend = search.get('backend') ?? '';
  const setParam = (k: string, v: string): void => {
    const next = new URLSearchParams(search);
    if (v === '') next.delete(k);
    else next.set(k, v);
    const qs = next.toString();
    navigate(`/${qs ? `?${qs}` : ''}`, { replace: true });
  };

  const clusters = useMemo(() => data?.clusters ?? [], [data]);
  const backends = useMemo(() => [...new Set(clusters.map((c) => c.backend))].sort(), [clusters]);
  const needle = q.trim().toLowerCase();
  const shown = clusters.filter((c) => {
    if (state !== '' && c.connection.state !== state) return false;
    if (backend !== '' && c.backend !== backend) return false;
    if (needle === '') return true;
    const hay = [
      c.name,
      c.backend,
      c.environment ?? '',
      ...Object.entries(c.tags).map(([k, v]) => `${k}=${v}`),
    ]
      .join(' ')
      .toLowerCase();
    return hay.includes(needle);
  });

  return (
    <div className="page">
      <div className="page-head">
        <h1>Fleet</h1>
        <button type="button" className="btn small" onClick={reload} disabled={loading}>
          {loading ? 'refreshing…' : 'refresh'}
        </button>
      </div>
      <form
        className="filters"
        role="search"
        aria-label="filter clusters"
        onSubmit={(e) => {
          e.preventDefault();
        }}
      >
        <label>
          search
          <input
            type="search"
            value={q}
            placeholder="name, environment, tag"
            onChange={(e) => {
              setParam('q', e.target.value);
            }}
          />
        </label>
        <label>
          connection
          <select
            value={state}
            onChange={(e) => {
              setParam('state', e.target.value);
            }}
          >
            <option value="">any</option>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          backend
          <select
            value={backend}
            onChange={(e) => {
              setParam('backend', e.target.value);
            }}
          >
            <option value="">any</option>
            {backends.map((b) => (
              <option key={b} value={b}>
                {b}
              </option>
            ))}
          </select>
        </label>
        <span className="muted small" aria-live="polite">
          {shown.length} of {clusters.length} clusters
        </span>
      </form>
      {error && (
        <p role="alert" className="error-text">
          {error.message}
        </p>
      )}
      <table className="table" aria-label="clusters">
        <thead>
          <tr>
            <th scope="col">cluster</th>
            <th scope="col">backend</th>
            <th scope="col">connection</th>
            <th scope="col">environment</th>
            <th scope="col">tags</th>
            <th scope="col">cluster shell</th>
            <th scope="col">pod exec</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((c) => (
            <tr key={c.name}>
              <td>
                <Link to={`/clusters/${encodeURIComponent(c.name)}`} className="strong">
                  {c.name}
                </Link>
              </td>
              <td>
                <span className="badge neutral">{c.backend}</span>
              </td>
              <td>
                <ConnectionBadge c={c} />
              </td>
              <td>{c.environment ?? <span className="muted">—</span>}</td>
              <td>
                <Tags tags={c.tags} />
              </td>
              <td>
                {c.clusterShellEnabled ? (
                  <span
                    className="badge ok"
                    title={c.clusterShellMode && `your tier's shells run in ${c.clusterShellMode} mode`}
                  >
                    available{c.clusterShellMode === 'kubectl' ? ' · kubectl' : ''}
                  </span>
                ) : (
                  <span className="muted small" title={c.clusterShellReason}>
                    {c.clusterShellReason ?? 'off'}
                  </span>
                )}
              </td>
              <td>{c.execEnabled ? 'on' : <span className="muted">off</span>}</td>
            </tr>
          ))}
          {data && shown.length === 0 && (
            <tr>
              <td colSpan={7} className="muted">
                {clusters.length === 0
                  ? 'No clusters are registered (PERISCOPE_CLUSTERS_FILE).'
                  : 'No cluster matches the filters.'}
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
