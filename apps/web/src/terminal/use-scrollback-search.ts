/**
 * Search in a terminal's scrollback: whether the search box is open, the query (kept while the box
 * is closed), and the match count the search addon reports.
 */
import { useEffect, useState, type RefObject } from 'react';

import { SEARCH_DECORATIONS, type Xterm } from './xterm-setup';

export interface SearchResults {
  /** 0-based index of the highlighted match */
  index: number;
  count: number;
}

export interface ScrollbackSearch {
  open: boolean;
  query: string;
  results: SearchResults | undefined;
  /** bumped whenever the search box should take the keyboard focus */
  focusRequest: number;
  /** Opens the box (if closed) and puts the cursor in it. */
  show: () => void;
  close: () => void;
  /** A new query: highlights as the operator types. */
  change: (query: string) => void;
  find: (dir: 'next' | 'prev') => void;
}

export function useScrollbackSearch(xtermRef: RefObject<Xterm | undefined>): ScrollbackSearch {
  const [open, setOpen] = useState(false);
  const [query, setQuery] = useState('');
  const [results, setResults] = useState<SearchResults | undefined>();
  const [focusRequest, setFocusRequest] = useState(0);

  useEffect(() => {
    if (!open) return;
    const sub = xtermRef.current?.search.onDidChangeResults((r) => {
      setResults({ index: r.resultIndex, count: r.resultCount });
    });
    return () => sub?.dispose();
  }, [open, xtermRef]);

  const search = (): Xterm['search'] | undefined => xtermRef.current?.search;
  return {
    open,
    query,
    results,
    focusRequest,
    show: () => {
      setOpen(true);
      setFocusRequest((n) => n + 1);
    },
    close: () => {
      search()?.clearDecorations();
      setOpen(false);
      setResults(undefined);
      xtermRef.current?.term.focus();
    },
    change: (q) => {
      setQuery(q);
      if (q !== '') search()?.findNext(q, { ...SEARCH_DECORATIONS, incremental: true });
      else search()?.clearDecorations();
    },
    find: (dir) => {
      if (query === '') return;
      if (dir === 'next') search()?.findNext(query, SEARCH_DECORATIONS);
      else search()?.findPrevious(query, SEARCH_DECORATIONS);
    },
  };
}
