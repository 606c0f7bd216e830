/**
 * The xterm.js terminal of one tab, loaded on demand (this module and xterm are a separate chunk).
 * Output comes from the store's sink, input goes to the tab's SessionClient; the size follows the
 * drawer (fit addon + ResizeObserver, resize frames debounced 80 ms). Search, copy/paste and font
 * size live in a small toolbar.
 */
import '@xterm/xterm/css/xterm.css';

import { FitAddon } from '@xterm/addon-fit';
import { SearchAddon } from '@xterm/addon-search';
import { Unicode11Addon } from '@xterm/addon-unicode11';
import { WebLinksAddon } from '@xterm/addon-web-links';
import { Terminal, type ITheme } from '@xterm/xterm';
import { useEffect, useRef, useState, type KeyboardEvent } from 'react';

import { terminals } from './store';

const FONT_KEY = 'periscope.terminal.fontSize';
const FONT_MIN = 9;
const FONT_MAX = 24;

function storedFontSize(): number {
  const n = Number(localStorage.getItem(FONT_KEY));
  return Number.isFinite(n) && n >= FONT_MIN && n <= FONT_MAX ? n : 13;
}

function themeFromCss(): ITheme {
  const css = getComputedStyle(document.documentElement);
  const v = (name: string): string => css.getPropertyValue(name).trim();
  return {
    background: v('--term-bg'),
    foreground: v('--term-fg'),
    cursor: v('--term-cursor'),
    cursorAccent: v('--term-bg'),
    selectionBackground: v('--term-selection'),
  };
}

/** The buffer as text, wrapped rows joined back into their logical lines. */
function bufferText(term: Terminal): string {
  const b = term.buffer.active;
  const lines: string[] = [];
  for (let i = 0; i < b.length; i++) {
    const line = b.getLine(i);
    if (!line) continue;
    const text = line.translateToString(true);
    if (line.isWrapped && lines.length > 0)
      lines[lines.length - 1] = `${lines[lines.length - 1] ?? ''}${text}`;
    else lines.push(text);
  }
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines.join('\n');
}

export interface TerminalViewProps {
  tabId: string;
  active: boolean;
}

export default function TerminalView({ tabId, active }: TerminalViewProps): React.JSX.Element {
  const host = useRef<HTMLDivElement>(null);
  const termRef = useRef<Terminal | undefined>(undefined);
  const fitRef = useRef<FitAddon | undefined>(undefined);
  const searchRef = useRef<SearchAddon | undefined>(undefined);
  const searchInput = useRef<HTMLInputElement>(null);
  const [fontSize, setFontSize] = useState(storedFontSize);
  const [searching, setSearching] = useState(false);
  const [query, setQuery] = useState('');
  const [results, setResults] = useState<{ index: number; count: number } | undefined>();
  const [copied, setCopied] = useState<string | undefined>();

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const term = new Terminal({
      allowProposedApi: true,
      cursorBlink: true,
      cursorStyle: 'block',
      fontFamily:
        'ui-monospace, "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace',
      fontSize: storedFontSize(),
      lineHeight: 1.2,
      scrollback: 10_000,
      theme: themeFromCss(),
    });
    const fit = new FitAddon();
    const search = new SearchAddon();
    term.loadAddon(fit);
    term.loadAddon(search);
    term.loadAddon(new Unicode11Addon());
    term.unicode.activeVersion = '11';
    term.loadAddon(
      new WebLinksAddon((_e, uri) => {
        window.open(uri, '_blank', 'noopener,noreferrer');
      }),
    );
    term.open(el);
    term.textarea?.setAttribute('aria-label', 'terminal input');
    termRef.current = term;
    fitRef.current = fit;
    searchRef.current = search;

    const client = (): ReturnType<typeof terminals.client> => terminals.client(tabId);
    const fitNow = (): void => {
      if (el.clientWidth > 0 && el.clientHeight > 0) {
        try {
          fit.fit();
        } catch {
          // not laid out yet
        }
      }
    };
    fitNow();
    client()?.resize(term.cols, term.rows);

    let resizeTimer: ReturnType<typeof setTimeout> | undefined;
    const onResize = term.onResize(({ cols, rows }) => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        client()?.resize(cols, rows);
      }, 80);
    });
    const onData = term.onData((d) => {
      client()?.sendInput(d);
    });
    const onBinary = term.onBinary((d) => {
      const bytes = new Uint8Array(d.length);
      for (let i = 0; i < d.length; i++) bytes[i] = d.charCodeAt(i) & 0xff;
      client()?.sendInput(bytes);
    });
    const onResults = search.onDidChangeResults((r) => {
      setResults({ index: r.resultIndex, count: r.resultCount });
    });
    term.attachCustomKeyEventHandler((e) => {
      if (e.type !== 'keydown' || !e.ctrlKey || !e.shiftKey) return true;
      const k = e.key.toLowerCase();
      if (k === 'c') {
        const sel = term.getSelection();
        if (sel) void navigator.clipboard.writeText(sel).catch(() => undefined);
        e.preventDefault();
        return false;
      }
      if (k === 'v') return false; // the browser pastes into xterm's textarea
      if (k === 'f') {
        e.preventDefault();
        setSearching(true);
        setTimeout(() => searchInput.current?.focus(), 0);
        return false;
      }
      return true;
    });

    const ro = new ResizeObserver(() => {
      requestAnimationFrame(fitNow);
    });
    ro.observe(el);

    const onTheme = (): void => {
      term.options.theme = themeFromCss();
    };
    const mo = new MutationObserver(onTheme);
    mo.observe(document.documentElement, { attributes: true, attributeFilter: ['data-theme'] });

    const detach = terminals.attachSink(
      tabId,
      (bytes) => {
        term.write(bytes);
      },
      () => bufferText(term),
    );

    return () => {
      detach();
      clearTimeout(resizeTimer);
      ro.disconnect();
      mo.disconnect();
      onResize.dispose();
      onData.dispose();
      onBinary.dispose();
      onResults.dispose();
      term.dispose();
      termRef.current = undefined;
    };
  }, [tabId]);

  useEffect(() => {
    if (!active) return;
    const term = termRef.current;
    requestAnimationFrame(() => {
      try {
        fitRef.current?.fit();
      } catch {
        // hidden
      }
      term?.focus();
    });
  }, [active]);

  const changeFont = (delta: number): void => {
    const size = Math.min(FONT_MAX, Math.max(FONT_MIN, fontSize + delta));
    setFontSize(size);
    localStorage.setItem(FONT_KEY, String(size));
    const term = termRef.current;
    if (!term) return;
    term.options.fontSize = size;
    try {
      fitRef.current?.fit();
    } catch {
      // hidden
    }
  };

  const searchOpts = {
    decorations: {
      matchOverviewRuler: '#d4a72c',
      activeMatchColorOverviewRuler: '#e5534b',
      matchBackground: '#d4a72c66',
      activeMatchBackground: '#e5534b99',
    },
  };
  const find = (dir: 'next' | 'prev'): void => {
    if (query === '') return;
    if (dir === 'next') searchRef.current?.findNext(query, searchOpts);
    else searchRef.current?.findPrevious(query, searchOpts);
  };
  const closeSearch = (): void => {
    setSearching(false);
    setResults(undefined);
    searchRef.current?.clearDecorations();
    termRef.current?.focus();
  };
  const onSearchKey = (e: KeyboardEvent<HTMLInputElement>): void => {
    if (e.key === 'Enter') {
      e.preventDefault();
      find(e.shiftKey ? 'prev' : 'next');
    } else if (e.key === 'Escape') {
      e.preventDefault();
      closeSearch();
    }
  };

  const copy = async (): Promise<void> => {
    const sel = termRef.current?.getSelection() ?? '';
    if (sel === '') {
      setCopied('select text first');
    } else {
      try {
        await navigator.clipboard.writeText(sel);
        setCopied('copied');
      } catch {
        setCopied('copy blocked by the browser; use Ctrl+Shift+C');
      }
    }
    setTimeout(() => {
      setCopied(undefined);
    }, 1500);
  };
  const paste = async (): Promise<void> => {
    try {
      const text = await navigator.clipboard.readText();
      termRef.current?.paste(text);
    } catch {
      setCopied('paste blocked by the browser; use Ctrl+Shift+V');
      setTimeout(() => {
        setCopied(undefined);
      }, 2000);
    }
    termRef.current?.focus();
  };

  return (
    <div className="term-view" hidden={!active}>
      <div className="term-tools" role="toolbar" aria-label="terminal tools">
        {searching ? (
          <div className="term-search" role="search">
            <input
              ref={searchInput}
              type="search"
              aria-label="search in scrollback"
              placeholder="search scrollback"
              value={query}
              onChange={(e) => {
                setQuery(e.target.value);
                if (e.target.value !== '')
                  searchRef.current?.findNext(e.target.value, { ...searchOpts, incremental: true });
                else searchRef.current?.clearDecorations();
              }}
              onKeyDown={onSearchKey}
            />
            <span className="muted small" aria-live="polite">
              {results && query !== ''
                ? results.count === 0
                  ? 'no match'
                  : `${results.index + 1}/${results.count}`
                : ''}
            </span>
            <button
              type="button"
              className="btn small"
              onClick={() => {
                find('prev');
              }}
              aria-label="previous match"
            >
              ↑
            </button>
            <button
              type="button"
              className="btn small"
              onClick={() => {
                find('next');
              }}
              aria-label="next match"
            >
              ↓
            </button>
            <button type="button" className="btn small" onClick={closeSearch} aria-label="close search">
              ✕
            </button>
          </div>
        ) : (
          <button
            type="button"
            className="btn small"
            title="Search scrollback (Ctrl+Shift+F)"
            onClick={() => {
              setSearching(true);
              setTimeout(() => searchInput.current?.focus(), 0);
            }}
          >
            search
          </button>
        )}
        <button
          type="button"
          className="btn small"
          title="Copy the selection (Ctrl+Shift+C)"
          onClick={() => void copy()}
        >
          copy
        </button>
        <button type="button" className="btn small" title="Paste (Ctrl+Shift+V)" onClick={() => void paste()}>
          paste
        </button>
        <span className="term-font" role="group" aria-label="font size">
          <button
            type="button"
            className="btn small"
            aria-label="smaller font"
            onClick={() => {
              changeFont(-1);
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
              changeFont(1);
            }}
            disabled={fontSize >= FONT_MAX}
          >
            A+
          </button>
        </span>
        {copied && (
          <span className="small muted" role="status">
            {copied}
          </span>
        )}
      </div>
      <div className="term-host" ref={host} data-testid={`terminal-${tabId}`} />
    </div>
  );
}
