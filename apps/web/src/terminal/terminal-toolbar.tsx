/** The toolbar above a terminal: scrollback search, copy and paste, font size, and their messages. */
import { useEffect, useRef, type KeyboardEvent } from 'react';

import type { ScrollbackSearch } from './use-scrollback-search';
import { FONT_MAX, FONT_MIN } from './xterm-setup';

export interface TerminalToolbarProps {
  search: ScrollbackSearch;
  fontSize: number;
  onFontStep: (delta: number) => void;
  onCopy: () => void;
  onPaste: () => void;
  /** a short-lived message of the last copy or paste */
  message: string | undefined;
}

export function TerminalToolbar({
  search,
  fontSize,
  onFontStep,
  onCopy,
  onPaste,
  message,
}: TerminalToolbarProps): React.JSX.Element {
  return (
    <div className="term-tools" role="toolbar" aria-label="terminal tools">
      {search.open ? (
        <SearchBox search={search} />
      ) : (
        <button
          type="button"
          className="btn small"
          title="Search scrollback (Ctrl+Shift+F)"
          onClick={search.show}
        >
          search
        </button>
      )}
      <button type="button" className="btn small" title="Copy the selection (Ctrl+Shift+C)" onClick={onCopy}>
        copy
      </button>
      <button type="button" className="btn small" title="Paste (Ctrl+Shift+V)" onClick={onPaste}>
        paste
      </button>
      <span className="term-font" role="group" aria-label="font size">
        <button
          type="button"
          className="btn small"
          aria-label="smaller font"
          onClick={() => {
            onFontStep(-1);
          }}
          disabled={fontSize <= FONT_MIN}
        >
          A−
        </button>
        <span className="small muted" aria-live="polite">
          {fontSize}px
        </span>
        <button
          type="button"
          className="btn small"
          aria-label="larger font"
          onClick={() => {
            onFontStep(1);
          }}
          disabled={fontSize >= FONT_MAX}
        >
          A+
        </button>
      </span>
      {message && (
        <span className="small muted" role="status">
          {message}
        </span>
      )}
    </div>
  );
}

function resultText(search: ScrollbackSearch): string {
  const r = search.results;
  if (!r || search.query === '') return '';
  return r.count === 0 ? 'no match' : `${r.index + 1}/${r.count}`;
}

function SearchBox({ search }: { search: ScrollbackSearch }): React.JSX.Element {
  const input = useRef<HTMLInputElement>(null);
  const { focusRequest } = search;
  useEffect(() => {
    if (focusRequest > 0) input.current?.focus();
  }, [focusRequest]);
  const onKey = (e: KeyboardEvent<HTMLInputElement>): void => {
    if (e.key === 'Enter') {
      e.preventDefault();
      search.find(e.shiftKey ? 'prev' : 'next');
    } else if (e.key === 'Escape') {
      e.preventDefault();
      search.close();
    }
  };
  return (
    <div className="term-search" role="search">
      <input
        ref={input}
        type="search"
        aria-label="search in scrollback"
        placeholder="search scrollback"
        value={search.query}
        onChange={(e) => {
          search.change(e.target.value);
        }}
        onKeyDown={onKey}
      />
      <span className="muted small" aria-live="polite">
        {resultText(search)}
      </span>
      <button
        type="button"
        className="btn small"
        onClick={() => {
          search.find('prev');
        }}
        aria-label="previous match"
      >
        ↑
      </button>
      <button
        type="button"
        className="btn small"
        onClick={() => {
          search.find('next');
        }}
        aria-label="next match"
      >
        ↓
      </button>
      <button type="button" className="btn small" onClick={search.close} aria-label="close search">
        ✕
      </button>
    </div>
  );
}
