/**
 * The audit page: filters, the events table (expandable rows) and paging. The URL holds the
 * filters (useAuditQuery); the pieces live in the audit-* files beside this one.
 */
import { Fragment, useState } from 'react';

import type { WhoAmI } from '../types';
import { AuditFilters } from './audit-filters';
import { AuditEventDetails, AuditEventRow } from './audit-rows';
import { useAuditQuery } from './use-audit-query';

export function AuditPage({ me }: { me: WhoAmI }): React.JSX.Element {
  const { search, data, error, loading, reload, apply, showSession, older, newer } = useAuditQuery();
  /** ids of the expanded events */
  const [open, setOpen] = useState<Set<string>>(new Set());
  const toggle = (id: string): void => {
    const next = new Set(open);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setOpen(next);
  };

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
      <AuditFilters search={search} onApply={apply} />
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
            <th scope="col">reason</th>
            <th scope="col">outcome</th>
            <th scope="col">session</th>
          </tr>
        </thead>
        <tbody>
          {(data?.events ?? []).map((e) => {
            const id = String(e.id);
            const expanded = open.has(id);
            return (
              <Fragment key={id}>
                <AuditEventRow
                  event={e}
                  expanded={expanded}
                  onToggle={() => {
                    toggle(id);
                  }}
                  onShowSession={showSession}
                />
                {expanded && <AuditEventDetails event={e} />}
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
        <button type="button" className="btn small" onClick={newer} disabled={!newer}>
          ← newer
        </button>
        <button type="button" className="btn small" onClick={older} disabled={!older}>
          older →
        </button>
      </div>
    </div>
  );
}
