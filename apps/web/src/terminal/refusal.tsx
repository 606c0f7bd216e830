/**
 * The server refused to open a session: what it said, what to do about it, and for a session cap
 * the operator's live sessions, each of which can be ended to make room.
 */
import { ERROR_CODE, SESSION_KIND } from '@periscope/protocol';
import { useState } from 'react';

import type { ActiveSession } from '../api';
import { dateTime } from '../format';
import { helpFor } from './help';
import { terminals, type Tab } from './store';

export function Refusal({ tab }: { tab: Tab }): React.JSX.Element | null {
  const e = tab.refusal;
  if (!e) return null;
  const help = helpFor(e.code, tab.spec.kind);
  const capped = e.code === ERROR_CODE.capUser || e.code === ERROR_CODE.capCluster;
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
      {capped && e.activeSessions.length > 0 && <ActiveSessions tab={tab} sessions={e.activeSessions} />}
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

function ActiveSessions({ tab, sessions }: { tab: Tab; sessions: ActiveSession[] }): React.JSX.Element {
  /** the session being ended; every button waits for it */
  const [busy, setBusy] = useState<string | undefined>();
  return (
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
            <td>{a.kind ?? SESSION_KIND.clusterShell}</td>
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
  );
}
