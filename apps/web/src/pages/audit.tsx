import { Fragment, useState, type SyntheticEvent } from 'react';

import { dateTime, duration } from '../format';
import { navigate, useLocation } from '../router';
import type { AuditEvent, AuditPage as AuditAnswer, WhoAmI } from '../types';
import { useApi } from '../use-api';
import { formField } from './form';

const FILTERS = ['verb', 'actor', 'cluster', 'session_id', 'outcome', 'since', 'until'] as const;
const VERBS = [
  'cluster_shell_open',
  'cluster_shell_close',
  'pod_exec_open',
  'pod_exec_close',
  'session_ended_by_admin',
];

interface Command {
  argv: string[];
  exit_code: number | null;
  duration_ms: number | null;
  timestamp?: string;
}

const num = (v: unknown): number | null => (typeof v === 'number' ? v : null);
const text = (v: unknown): string | null => (typeof v === 'string' ? v : null);

function commandsOf(e: AuditEvent): Command[] {
  const list = e.body['commands'];
  if (!Array.isArray(list)) return [];
  return list
    .filter((c): c is Record<string, unknown> => typeof c === 'object' && c !== null)
    .map((c) => ({
      argv: Array.isArray(c['argv']) ? c['argv'].map(String) : [],
      exit_code: num(c['exit_code']),
      duration_ms: num(c['duration_ms']),
      timestamp: text(c['timestamp']) ?? undefined,
    }));
}

/** datetime-local value ⇄ ISO string in the URL */
const toLocalInput = (iso: string): string => {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const off = d.getTimezoneOffset() * 60_000;
  return new Date(d.getTime() - off).toISOString().slice(0, 16);
};
const fromLocalInput = (v: string): string => (v === '' ? '' : new Date(v).toISOString());

export function AuditPage({ me }: { me: WhoAmI }): React.JSX.Element {
  const { search } = useLocation();
  const query = new URLSearchParams();
  for (const k of [...FILTERS, 'before', 'limit'] as const) {
    const v = search.get(k);
    if (v) query.set(k, v);
  }
  if (!query.has('limit')) query.set('limit', '50');
  const { data, error, loading, reload } = useApi<AuditAnswer>(`/api/audit?${query.toString()}`, 15_000);
  const [open, setOpen] = useState<Set<string>>(new Set());
  const [history, setHistory] = useState<string[]>([]);

  const go = (params: URLSearchParams): void => {
    const qs = params.toString();
    navigate(`/audit${qs ? `?${qs}` : ''}`);
  };
  const onSubmit = (e: SyntheticEvent<HTMLFormElement>): void => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const next = new URLSearchParams();
    for (const k of FILTERS) {
      let v = formField(f, k).trim();
      if (k === 'since' || k === 'until') v = fromLocalInput(v);
      if (v) next.set(k, v);
    }
    setHistory([]);
    go(next);
  };
  const older = (): void => {
    if (data?.nextBefore === null || data?.nextBefore === undefined) return;
    setHistory([...history, search.get('before') ?? '']);
    const next = new URLSearchParams(search);
    next.set('before', String(data.nextBefore));
    go(next);
  };
  const newer = (): void => {
    const prev = history[history.length - 1];
    setHistory(history.slice(0, -1));
    const next = new URLSearchParams(search);
    if (prev) next.set('before', prev);
    else next.delete('before');
    go(next);
  };
  const toggle = (id: string): void => {
    const next = new Set(open);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setOpen(next);
  };

  const formKey = FILTERS.map((k) => search.get(k) ?? '').join('|');
  return (
    <div className="page">
      <div className="page-head">
        <h1>Audit</h1>
        <button type="button" className="btn small" onClick={reload} disabled={loading}>
          {loading ? 'refreshing…' : 'refresh'}
        </button>
      </div>
      {me.tier !== 'admin' && (
        <p className="muted small" role="note">
          Unless you are an auditor, you see your own events only.
        </p>
      )}
      <form key={formKey} className="filters wrap" aria-label="audit filters" onSubmit={onSubmit}>
        <label>
          verb
          <input name="verb" list="verbs" defaultValue={search.get('verb') ?? ''} />
          <datalist id="verbs">
            {VERBS.map((v) => (
              <option key={v} value={v} />
            ))}
          </datalist>
        </label>
        <label>
          actor
          <input name="actor" defaultValue={search.get('actor') ?? ''} />
        </label>
        <label>
          cluster
          <input name="cluster" defaultValue={search.get('cluster') ?? ''} />
        </label>
        <label>
          session id
          <input name="session_id" defaultValue={search.get('session_id') ?? ''} size={14} />
        </label>
        <label>
          outcome
          <select name="outcome" defaultValue={search.get('outcome') ?? ''}>
            <option value="">any</option>
            <option value="ok">ok</option>
            <option value="error">error</option>
          </select>
        </label>
        <label>
          from
          <input type="datetime-local" name="since" defaultValue={toLocalInput(search.get('since') ?? '')} />
        </label>
        <label>
          until
          <input type="datetime-local" name="until" defaultValue={toLocalInput(search.get('until') ?? '')} />
        </label>
        <button type="submit" className="btn small primary">
          apply
        </button>
        <button
          type="button"
          className="btn small"
          onClick={() => {
            setHistory([]);
            go(new URLSearchParams());
          }}
        >
          clear
        </button>
      </form>
      {error && (
        <p role="alert" className="error-text">
          {error.message}
        </p>
      )}
      <table className="table audit" aria-label="audit events">
        <thead>
          <tr>
            <th scope="col">
              <span className="sr-only">details</span>
            </th>
            <th scope="col">time</th>
            <th scope="col">verb</th>
            <th scope="col">actor</th>
            <th scope="col">cluster</th>
            <th scope="col">tier</th>
            <th scope="col">duration</th>
            <th scope="col">exit</th>
            <th scope="col">close reason</th>
            <th scope="col">outcome</th>
            <th scope="col">session</th>
          </tr>
        </thead>
        <tbody>
          {(data?.events ?? []).map((e) => {
            const id = String(e.id);
            const expanded = open.has(id);
            const commands = commandsOf(e);
            return (
              <Fragment key={id}>
                <tr className={e.outcome === 'error' ? 'row-error' : undefined}>
                  <td>
                    <button
                      type="button"
                      className="btn small icon"
                      aria-expanded={expanded}
                      aria-controls={`audit-${id}`}
                      aria-label={`details of ${e.verb} at ${e.time}`}
                      onClick={() => {
                        toggle(id);
                      }}
                    >
                      {expanded ? '▾' : '▸'}
                    </button>
                  </td>
                  <td className="nowrap">{dateTime(e.time)}</td>
                  <td>
                    <span className="badge neutral">{e.verb}</span>
                  </td>
                  <td>{e.actor}</td>
                  <td>{e.cluster ?? '—'}</td>
                  <td>{text(e.body['tier']) ?? '—'}</td>
                  <td>{duration(num(e.body['duration_ms']))}</td>
                  <td>{num(e.body['exit_code']) ?? '—'}</td>
                  <td>{text(e.body['close_reason']) ?? '—'}</td>
                  <td>
                    <span className={`badge ${e.outcome === 'ok' ? 'ok' : 'bad'}`}>{e.outcome}</span>
                  </td>
                  <td>
                    {e.sessionId ? (
                      <button
                        type="button"
                        className="link-button"
                        title={`show every event of session ${e.sessionId}`}
                        onClick={() => {
                          setHistory([]);
                          go(new URLSearchParams({ session_id: e.sessionId ?? '' }));
                        }}
                      >
                        <code>{e.sessionId.slice(0, 8)}</code>
                      </button>
                    ) : (
                      '—'
                    )}
                  </td>
                </tr>
                {expanded && (
                  <tr id={`audit-${id}`} className="audit-detail">
                    <td />
                    <td colSpan={10}>
                      {e.verb.endsWith('_close') && (
                        <>
                          <h3 className="small">commands ({commands.length})</h3>
                          {e.body['commands_source'] === 'operator' && (
                            <p className="muted small">
                              Recorded inside the operator&apos;s shell, so the operator could change it;
                              secret values are shown as ***.
                              {e.body['commands_truncated'] === true &&
                                ' The list was cut at its size limit.'}
                            </p>
                          )}
                          {commands.length === 0 ? (
                            <p className="muted small">
                              No kubectl or helm command was recorded in this session.
                            </p>
                          ) : (
                            <table className="table compact" aria-label="commands of the session">
                              <thead>
                                <tr>
                                  <th scope="col">command</th>
                                  <th scope="col">exit code</th>
                                  <th scope="col">duration</th>
                                  <th scope="col">at</th>
                                </tr>
                              </thead>
                              <tbody>
                                {commands.map((c, i) => (
                                  <tr key={i}>
                                    <td>
                                      <code>{c.argv.join(' ')}</code>
                                    </td>
                                    <td>{c.exit_code ?? '—'}</td>
                                    <td>{c.duration_ms === null ? '—' : `${c.duration_ms} ms`}</td>
                                    <td className="nowrap">{c.timestamp ? dateTime(c.timestamp) : '—'}</td>
                                  </tr>
                                ))}
                              </tbody>
                            </table>
                          )}
                        </>
                      )}
                      <details>
                        <summary className="small">full event</summary>
                        <pre className="json">{JSON.stringify(e, null, 2)}</pre>
                      </details>
                    </td>
                  </tr>
                )}
              </Fragment>
            );
          })}
          {data && data.events.length === 0 && (
            <tr>
              <td colSpan={11} className="muted">
                No events match these filters.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <div className="pager">
        <button type="button" className="btn small" onClick={newer} disabled={!search.get('before')}>
          ← newer
        </button>
        <button
          type="button"
          className="btn small"
          onClick={older}
          disabled={data?.nextBefore === null || data?.nextBefore === undefined}
        >
          older →
        </button>
      </div>
    </div>
  );
}
