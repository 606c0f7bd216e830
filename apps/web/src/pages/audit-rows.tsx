/** The rows of the audit table: one line per event, and its details (commands, full JSON) when expanded. */
import { dateTime, duration } from '../format';
import { Link } from '../router';
import type { AuditEvent } from '../types';
import { commandsOf, endedByOf, num, reasonOf, refusalOf, text, type Command } from './audit-event';

export function AuditEventRow({
  event: e,
  expanded,
  onToggle,
  onShowSession,
}: {
  event: AuditEvent;
  expanded: boolean;
  onToggle: () => void;
  onShowSession: (sessionId: string) => void;
}): React.JSX.Element {
  const id = String(e.id);
  return (
    <tr className={e.outcome === 'error' ? 'row-error' : undefined}>
      <td>
        <button
          type="button"
          className="btn small icon"
          aria-expanded={expanded}
          aria-controls={`audit-${id}`}
          aria-label={`details of ${e.verb} at ${e.time}`}
          onClick={onToggle}
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
      <td>{reasonOf(e) ?? '—'}</td>
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
              onShowSession(e.sessionId ?? '');
            }}
          >
            <code>{e.sessionId.slice(0, 8)}</code>
          </button>
        ) : (
          '—'
        )}
        {e.sessionId && typeof e.body['recording_id'] === 'string' && (
          <>
            {' '}
            <Link
              to={`/sessions/${e.sessionId}/replay`}
              className="btn small"
              aria-label={`replay session ${e.sessionId}`}
            >
              ▶ replay
            </Link>
          </>
        )}
      </td>
    </tr>
  );
}

export function AuditEventDetails({ event: e }: { event: AuditEvent }): React.JSX.Element {
  const commands = commandsOf(e);
  const refusal = refusalOf(e);
  const ended = endedByOf(e);
  return (
    <tr id={`audit-${String(e.id)}`} className="audit-detail">
      <td />
      <td colSpan={10}>
        {refusal && (
          <p className="small" data-testid="audit-refusal">
            Refused with <code>{refusal.code}</code>
            {refusal.reason !== null && `: ${refusal.reason}`}
            {refusal.droppedBefore > 0 &&
              ` (${refusal.droppedBefore} earlier refusals of this person were not recorded: too many in a short time)`}
          </p>
        )}
        {ended && (
          <p className="small" data-testid="audit-ended-by">
            Ended by <strong>{ended.by}</strong>
            {ended.reason !== null ? (
              <>
                {' '}
                with the reason <q>{ended.reason}</q>
              </>
            ) : (
              ' without a reason'
            )}
          </p>
        )}
        {e.verb.endsWith('_close') && (
          <>
            <h3 className="small">commands ({commands.length})</h3>
            {e.body['commands_source'] === 'operator' && (
              <p className="muted small">
                Recorded inside the operator&apos;s shell, so the operator could change it; secret values are
                shown as ***.
                {e.body['commands_truncated'] === true && ' The list was cut at its size limit.'}
              </p>
            )}
            {commands.length === 0 ? (
              <p className="muted small">No kubectl or helm command was recorded in this session.</p>
            ) : (
              <CommandsTable commands={commands} />
            )}
          </>
        )}
        <details>
          <summary className="small">full event</summary>
          <pre className="json">{JSON.stringify(e, null, 2)}</pre>
        </details>
      </td>
    </tr>
  );
}

function CommandsTable({ commands }: { commands: Command[] }): React.JSX.Element {
  return (
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
  );
}
