/**
 * The one banner a tab shows about its session, most urgent first: the idle warning, reconnecting,
 * session gone, a final error (with what to do), a normal end, the maximum-length warning, or a
 * passing notice.
 */
import { TERMINAL_ERROR } from '@periscope/protocol';

import { mmss } from '../format';
import { closedText, helpFor } from './help';
import { terminals, type Tab } from './store';

export function SessionBanner({ tab, now }: { tab: Tab; now: number }): React.JSX.Element | null {
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
    const help = helpFor(TERMINAL_ERROR.sessionGone, tab.spec.kind);
    return (
      <div className="banner bad" role="alert">
        <span>
          <strong>{help.title}</strong> — {s.message || help.fix}
        </span>
        <NewSessionButton tab={tab} primary />
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
        <NewSessionButton tab={tab} />
      </div>
    );
  }
  if (s.phase === 'closed' && s.endedBy !== undefined && s.reason === 'ended_by_admin') {
    // Someone else ended it: say who and why, in words (React renders the reason as text).
    return (
      <div className="banner warn" role="alert" data-testid="ended-by">
        <span>
          <strong>{s.endedBy}</strong> (admin) ended this session
          {s.endReason !== undefined ? (
            <>
              : <q data-testid="end-reason">{s.endReason}</q>
            </>
          ) : (
            ' without giving a reason'
          )}
          . Scrollback stays until you close the tab.
        </span>
        <NewSessionButton tab={tab} />
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
        <NewSessionButton tab={tab} />
      </div>
    );
  }
  if (tab.maxCutAt !== undefined && s.phase === 'open') {
    const left = Math.max(0, tab.maxCutAt - now);
    return (
      <div className="banner warn" role="alert" data-testid="max-warn">
        <span>
          session reaches its maximum length and will close in <strong>{mmss(left)}</strong>, whatever you
          type. Finish or save your work; open a new session to go on.
        </span>
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

function NewSessionButton({ tab, primary = false }: { tab: Tab; primary?: boolean }): React.JSX.Element {
  return (
    <button
      type="button"
      className={primary ? 'btn small primary' : 'btn small'}
      onClick={() => {
        terminals.retry(tab.id);
      }}
    >
      open a new session
    </button>
  );
}
