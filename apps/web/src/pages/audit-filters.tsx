/**
 * The filter form of the audit page. Uncontrolled: it starts from the URL (remounted whenever the
 * URL's filters change) and hands the submitted filters over as URL parameters.
 */
import type { SyntheticEvent } from 'react';

import { formField } from './form';
import { AUDIT_FILTERS } from './use-audit-query';

/** The verbs the server writes (suggestions; any verb can be typed). */
const VERBS = [
  'cluster_shell_open',
  'cluster_shell_close',
  'cluster_shell_denied',
  'exec_open',
  'exec_close',
  'exec_denied',
  'session_end_request',
  'agent_revoke',
];

/** datetime-local value ⇄ ISO string in the URL */
const toLocalInput = (iso: string): string => {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const off = d.getTimezoneOffset() * 60_000;
  return new Date(d.getTime() - off).toISOString().slice(0, 16);
};
const fromLocalInput = (v: string): string => (v === '' ? '' : new Date(v).toISOString());

function filtersOf(form: FormData): URLSearchParams {
  const next = new URLSearchParams();
  for (const k of AUDIT_FILTERS) {
    let v = formField(form, k).trim();
    if (k === 'since' || k === 'until') v = fromLocalInput(v);
    if (v) next.set(k, v);
  }
  return next;
}

export function AuditFilters({
  search,
  onApply,
}: {
  search: URLSearchParams;
  onApply: (filters: URLSearchParams) => void;
}): React.JSX.Element {
  const onSubmit = (e: SyntheticEvent<HTMLFormElement>): void => {
    e.preventDefault();
    onApply(filtersOf(new FormData(e.currentTarget)));
  };
  const formKey = AUDIT_FILTERS.map((k) => search.get(k) ?? '').join('|');
  return (
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
          onApply(new URLSearchParams());
        }}
      >
        clear
      </button>
    </form>
  );
}
