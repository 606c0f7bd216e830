/**
 * The xterm.js side of a terminal view, free of React: how a terminal is built (font, theme from
 * the page's CSS variables, addons), the operator's font size, and the buffer read back as text.
 */
import { FitAddon } from '@xterm/addon-fit';
import { SearchAddon } from '@xterm/addon-search';
import { Unicode11Addon } from '@xterm/addon-unicode11';
import { WebLinksAddon } from '@xterm/addon-web-links';
import { Terminal, type ITheme } from '@xterm/xterm';

const FONT_KEY = 'periscope.terminal.fontSize';
export const FONT_MIN = 9;
export const FONT_MAX = 24;
const FONT_DEFAULT = 13;

/** The font size the operator chose last (any tab), or the default. */
export function storedFontSize(): number {
  const n = Number(localStorage.getItem(FONT_KEY));
  return Number.isFinite(n) && n >= FONT_MIN && n <= FONT_MAX ? n : FONT_DEFAULT;
}

/** `size` brought into the allowed range and remembered for the next terminal. */
export function storeFontSize(size: number): number {
  const clamped = Math.min(FONT_MAX, Math.max(FONT_MIN, size));
  localStorage.setItem(FONT_KEY, String(clamped));
  return clamped;
}

export function themeFromCss(): ITheme {
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

/** A terminal and the addons the view drives. */
export interface Xterm {
  term: Terminal;
  fit: FitAddon;
  search: SearchAddon;
}

/** A terminal opened in `el`, with links opening in a new tab and Unicode 11 widths. */
export function openXterm(el: HTMLElement): Xterm {
  const term = new Terminal({
    allowProposedApi: true,
    cursorBlink: true,
    cursorStyle: 'block',
    fontFamily: 'ui-monospace, "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace',
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
  return { term, fit, search };
}

/** Fits the terminal to its box; a hidden or not yet laid out box is left alone. */
export function fitQuietly(fit: FitAddon): void {
  try {
    fit.fit();
  } catch {
    // hidden, or not laid out yet
  }
}

/** The buffer as text, wrapped rows joined back into their logical lines. */
export function bufferText(term: Terminal): string {
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

/** Highlight colours of scrollback search matches. */
export const SEARCH_DECORATIONS = {
  decorations: {
    matchOverviewRuler: '#d4a72c',
    activeMatchColorOverviewRuler: '#e5534b',
    matchBackground: '#d4a72c66',
    activeMatchBackground: '#e5534b99',
  },
} as const;
