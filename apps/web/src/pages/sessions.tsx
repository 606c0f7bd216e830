import { END_REASON_MAX_CHARS } from '@periscope/protocol';
/**
 * The sessions page: live terminal sessions (cluster shell and pod exec) across the fleet for
 * admins (everyone else sees their own), filtered by person, cluster and kind (the URL holds the
 * filters), refreshed every few seconds (backing off while the server does not answer), and ended
 * with a reason that reaches the close audit record and the ended person's banner.
 */
import { Fragment, useState, type SyntheticEvent } from 'react';

import { del, errorText } from '../api';
import { dateTime, since } from '../format';
import { Link, navigate, useLocation } from '../router';
import type { LiveSession, WhoAmI } from '../types';
import { useNow } from '../use-now';
import { formField } from './form';
import { ReplicaNote } from './replica-note';
import {
  bytes,
  choices,
  filterOf,
  kindLabel,
  KIND_LABEL,
  matches,
  ordered,
  reasonProblem,
  seconds,
  SESSION_FILTERS,
  SESSIONS_POLL,
  targetOf,
  type SessionFilter,
} from './sessions-logic';
import { usePolled, type Polled } from './use-polled';

const COLUMNS = 12;

export function SessionsPage({ me }: { me: WhoAmI }): React.JSX.Element {
  const isAdmin = me.tier === 'admin';
  const { search } = useLocation();
  const filter = filterOf(search);
  const live = usePolled<{ sessions: LiveSession[] }>('/api/sessions', SESSIONS_POLL);
  const now = useNow(1000);
  /** the session whose end form is open */
  const [ending, setEnding] = useState<string | undefined>();
  const [notice, setNotice] = useState<string | undefined>();

  const all = ordered(live.data?.sessions ?? []);
  const shown = all.filter((s) => matches(s, filter));
  const setFilter = (key: keyof SessionFilter, value: string): void => {
    const next = new URLSearchParams();
    for (const k of SESSION_FILTERS) {
      const v = k === key ? value : filter[k];
      if (v) next.set(k, v);
    }
    const q = next.toString();
    navigate(q ? `/sessions?${q}` : '/sessions', { replace: true });
  };
  const filtered = SESSION_FILTERS.some((k) => filter[k] !== undefined);

  return (
    <div className="page">
      <div className="page-head">
        <h1>Sessions</h1>
        <button type="button" className="btn small" onClick={live.reload} disabled={live.refreshing}>
          {live.refreshing ? 'refreshing…' : 'refresh'}
        </button>
      </div>
      <p className="muted small" role="note">
        {isAdmin
          ? 'Live terminal sessions on every cluster, refreshed every few seconds. Ending one closes it at once; the person sees who ended it and why, and the close audit record keeps your reason.'
          : 'Your live terminal sessions (admins see everyone’s), refreshed every few seconds.'}
      </p>
      <form
        className="filters"
        aria-label="session filters"
        onSubmit={(e) => {
          e.preventDefault();
        }}
      >
        <FilterSelect
          label="person"
          value={filter.subject}
          options={choices(all, (s) => s.subject, filter.subject)}
          onChange={(v) => {
            setFilter('subject', v);
          }}
        />
        <FilterSelect
          label="cluster"
          value={filter.cluster}
          options={choices(all, (s) => s.cluster, filter.cluster)}
          onChange={(v) => {
            setFilter('cluster', v);
          }}
        />
        <FilterSelect
          label="kind"
          value={filter.kind}
          options={choices(all, (s) => s.kind, filter.kind).concat(
            Object.keys(KIND_LABEL).filter((k) => !all.some((s) => s.kind === k) && k !== filter.kind),
          )}
          render={kindLabel}
          onChange={(v) => {
            setFilter('kind', v);
          }}
        />
        {filtered && (
          <button
            type="button"
            className="btn small"
            onClick={() => {
              navigate('/sessions', { replace: true });
            }}
          >
            clear filters
          </button>
        )}
      </form>
      <PollState live={live} now={now} />
      {notice && (
        <p role="status" data-testid="sessions-notice">
          {notice}
        </p>
      )}
      <table className="table" aria-label="live sessions" aria-busy={live.loading}>
        <thead>
          <tr>
            <th scope="col">person</th>
            <th scope="col">cluster</th>
            <th scope="col">kind</th>
            <th scope="col">mode</th>
            <th scope="col">tier</th>
            <th scope="col">started</th>
            <th scope="col">idle</th>
            <th scope="col">bytes in</th>
            <th scope="col">bytes out</th>
            <th scope="col">state</th>
            <th scope="col">session</th>
            <th scope="col">
              <span className="sr-only">actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {shown.map((s) => (
            <Fragment key={s.sessionId}>
              <SessionRow
                s={s}
                mine={s.subject === me.subject}
                ending={ending === s.sessionId}
                onEnd={() => {
                  setEnding(ending === s.sessionId ? undefined : s.sessionId);
                }}
              />
              {ending === s.sessionId && (
                <EndForm
                  s={s}
                  onCancel={() => {
                    setEnding(undefined);
                  }}
                  onEnded={(m) => {
                    setEnding(undefined);
                    setNotice(m);
                    live.reload();
                  }}
                />
              )}
            </Fragment>
          ))}
          {live.loading && (
            <tr>
              <td colSpan={COLUMNS} className="muted" role="status">
                loading live sessions…
              </td>
            </tr>
          )}
          {live.data && shown.length === 0 && (
            <tr>
              <td colSpan={COLUMNS} className="muted" data-testid="sessions-empty">
                {all.length === 0
                  ? isAdmin
                    ? 'No live session on any cluster.'
                    : 'You have no live session.'
                  : `No live session matches the filters (${all.length} live in all).`}
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}

function FilterSelect({
  label,
  value,
  options,
  render = (v) => v,
  onChange,
}: {
  label: string;
  value: string | undefined;
  options: string[];
  render?: (v: string) => string;
  onChange: (v: string) => void;
}): React.JSX.Element {
  return (
    <label>
      {label}
      <select
        value={value ?? ''}
        onChange={(e) => {
          onChange(e.target.value);
        }}
      >
        <option value="">all</option>
        {options.map((o) => (
          <option key={o} value={o}>
            {render(o)}
          </option>
        ))}
      </select>
    </label>
  );
}

/** The refresh state under the filters: a failure, with the next attempt and a way to retry now. */
function PollState({
  live,
  now,
}: {
  live: Polled<{ sessions: LiveSession[] }>;
  now: number;
}): React.JSX.Element | null {
  if (!live.error) return null;
  const left = live.nextAt === undefined ? undefined : Math.max(0, Math.ceil((live.nextAt - now) / 1000));
  return (
    <div className="banner bad" role="alert" data-testid="sessions-error">
      <span>
        {live.data ? 'Refreshing the sessions failed' : 'Cannot load the live sessions'}: {live.error.message}
        {live.failures > 1 && ` (${live.failures} attempts in a row)`}
        {left !== undefined ? `; trying again in ${left}s.` : '; trying again…'}
        {live.data && ' The list below is from the last answer.'}
      </span>
      <button type="button" className="btn small" onClick={live.reload} disabled={live.refreshing}>
        retry now
      </button>
    </div>
  );
}

function SessionRow({
  s,
  mine,
  ending,
  onEnd,
}: {
  s: LiveSession;
  mine: boolean;
  ending: boolean;
  onEnd: () => void;
}): React.JSX.Element {
  const target = targetOf(s);
  return (
    <tr data-testid={`session-${s.sessionId}`}>
      <td className="strong">
        {s.subject}
        {mine && <span className="muted small"> (you)</span>}
      </td>
      <td>{s.cluster}</td>
      <td>
        {kindLabel(s.kind)}
        {target && (
          <div className="muted small">
            <code>{target}</code>
          </div>
        )}
      </td>
      <td>{s.mode ?? '—'}</td>
      <td>{s.tier ?? '—'}</td>
      <td className="nowrap" title={s.startedAt}>
        {dateTime(s.startedAt)} <span className="muted small">({since(s.startedAt)})</span>
      </td>
      <td>{seconds(s.idleSeconds)}</td>
      <td>{bytes(s.bytesIn)}</td>
      <td>{bytes(s.bytesOut)}</td>
      <td>
        <span
          className={`badge ${s.state === 'attached' ? 'ok' : s.state === 'detached' ? 'warn' : 'neutral'}`}
        >
          {s.state}
        </span>
      </td>
      <td>
        <code title={s.sessionId}>{s.sessionId.slice(0, 8)}</code>
        <ReplicaNote row={s} testId={`session-replica-${s.sessionId}`} />
      </td>
      <td className="nowrap">
        {!mine && (
          <Link
            to={`/sessions/${s.sessionId}/watch`}
            className="btn small"
            aria-label={`watch the session of ${s.subject} on ${s.cluster} (${s.sessionId.slice(0, 8)})`}
          >
            watch
          </Link>
        )}{' '}
        <button
          type="button"
          className="btn small danger"
          aria-expanded={ending}
          aria-label={`end the session of ${s.subject} on ${s.cluster} (${s.sessionId.slice(0, 8)})`}
          onClick={onEnd}
        >
          end…
        </button>
      </td>
    </tr>
  );
}

function EndForm({
  s,
  onCancel,
  onEnded,
}: {
  s: LiveSession;
  onCancel: () => void;
  onEnded: (message: string) => void;
}): React.JSX.Element {
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | undefined>();
  const onSubmit = async (e: SyntheticEvent<HTMLFormElement>): Promise<void> => {
    e.preventDefault();
    const reason = formField(new FormData(e.currentTarget), 'reason').trim();
    const bad = reasonProblem(reason);
    setProblem(bad);
    if (bad) return;
    setBusy(true);
    try {
      await del(`/api/sessions/${encodeURIComponent(s.sessionId)}`, { reason });
      onEnded(`Ended the ${kindLabel(s.kind)} of ${s.subject} on ${s.cluster}.`);
    } catch (err) {
      setProblem(`Ending the session failed: ${errorText(err)}`);
      setBusy(false);
    }
  };
  const id = `end-${s.sessionId}`;
  return (
    <tr className="audit-detail">
      <td colSpan={COLUMNS}>
        <form
          className="filters"
          aria-label={`end the session of ${s.subject}`}
          onSubmit={(e) => void onSubmit(e)}
        >
          <label htmlFor={id}>
            reason (shown to {s.subject}, kept in the audit record)
            <input
              id={id}
              name="reason"
              size={60}
              maxLength={END_REASON_MAX_CHARS}
              required
              autoFocus
              placeholder="e.g. incident 1234: freezing changes on this cluster"
            />
          </label>
          <button type="submit" className="btn small danger" disabled={busy}>
            {busy ? 'ending…' : 'end session'}
          </button>
          <button type="button" className="btn small" onClick={onCancel} disabled={busy}>
            cancel
          </button>
        </form>
        {problem && (
          <p role="alert" className="error-text">
            {problem}
          </p>
        )}
      </td>
    </tr>
  );
}
