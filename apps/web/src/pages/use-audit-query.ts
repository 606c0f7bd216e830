/**
 * The audit page's state lives in the URL: the filters and the `before` cursor of the page shown.
 * This hook reads them, fetches that page (polling every 15 s), and moves through the pages; the
 * cursors of newer pages are remembered here, as the server only hands out the next older one.
 */
import { useState } from 'react';

import { navigate, useLocation } from '../router';
import type { AuditPage } from '../types';
import { useApi, type Loaded } from '../use-api';

/** The filter parameters, in the order of the form. */
export const AUDIT_FILTERS = ['verb', 'actor', 'cluster', 'session_id', 'outcome', 'since', 'until'] as const;
export type AuditFilter = (typeof AUDIT_FILTERS)[number];

const PAGE_SIZE = '50';
const POLL_MS = 15_000;

export interface AuditQuery extends Loaded<AuditPage> {
  /** the current URL parameters */
  search: URLSearchParams;
  /** Shows the first page of these filters. */
  apply: (filters: URLSearchParams) => void;
  /** Shows every event of one session. */
  showSession: (sessionId: string) => void;
  older: (() => void) | undefined;
  newer: (() => void) | undefined;
}

export function useAuditQuery(): AuditQuery {
  const { search } = useLocation();
  const query = new URLSearchParams();
  for (const k of [...AUDIT_FILTERS, 'before', 'limit'] as const) {
    const v = search.get(k);
    if (v) query.set(k, v);
  }
  if (!query.has('limit')) query.set('limit', PAGE_SIZE);
  const loaded = useApi<AuditPage>(`/api/audit?${query.toString()}`, POLL_MS);
  /** the `before` cursors of the newer pages, the latest last ('' for the first page) */
  const [history, setHistory] = useState<string[]>([]);

  const go = (params: URLSearchParams): void => {
    const qs = params.toString();
    navigate(`/audit${qs ? `?${qs}` : ''}`);
  };
  const apply = (filters: URLSearchParams): void => {
    setHistory([]);
    go(filters);
  };
  const nextBefore = loaded.data?.nextBefore;

  return {
    ...loaded,
    search,
    apply,
    showSession: (sessionId) => {
      apply(new URLSearchParams({ session_id: sessionId }));
    },
    older:
      nextBefore === null || nextBefore === undefined
        ? undefined
        : () => {
            setHistory([...history, search.get('before') ?? '']);
            const next = new URLSearchParams(search);
            next.set('before', String(nextBefore));
            go(next);
          },
    newer: !search.get('before')
      ? undefined
      : () => {
          const prev = history[history.length - 1];
          setHistory(history.slice(0, -1));
          const next = new URLSearchParams(search);
          if (prev) next.set('before', prev);
          else next.delete('before');
          go(next);
        },
  };
}
