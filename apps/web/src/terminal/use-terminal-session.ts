/**
 * The xterm of one tab for as long as the view shows that tab: opened in the host element, bound
 * to the tab's session, fitted to its box (ResizeObserver) and to the page's theme, refitted and
 * focused when the tab becomes active. Keyboard shortcuts: Ctrl+Shift+C copies the selection,
 * Ctrl+Shift+V is left to the browser's paste, Ctrl+Shift+F calls `onFindShortcut`.
 */
import { useEffect, useEffectEvent, useRef, type RefObject } from 'react';

import { bindTerminalToTab } from './session-binding';
import { bufferText, fitQuietly, openXterm, themeFromCss, type Xterm } from './xterm-setup';

export interface TerminalSessionOptions {
  tabId: string;
  active: boolean;
  /** filled with the terminal while it is mounted (for event handlers; never read during render) */
  xtermRef: RefObject<Xterm | undefined>;
  onFindShortcut: () => void;
}

/** Answers the ref of the element the terminal renders into. */
export function useTerminalSession({
  tabId,
  active,
  xtermRef,
  onFindShortcut,
}: TerminalSessionOptions): RefObject<HTMLDivElement | null> {
  const host = useRef<HTMLDivElement>(null);
  const findShortcut = useEffectEvent(onFindShortcut);

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const x = openXterm(el);
    const { term, fit } = x;
    xtermRef.current = x;

    const fitNow = (): void => {
      if (el.clientWidth > 0 && el.clientHeight > 0) fitQuietly(fit);
    };
    fitNow();
    const unbind = bindTerminalToTab(term, tabId, () => bufferText(term));

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
        findShortcut();
        return false;
      }
      return true;
    });

    const ro = new ResizeObserver(() => {
      requestAnimationFrame(fitNow);
    });
    ro.observe(el);

    const mo = new MutationObserver(() => {
      term.options.theme = themeFromCss();
    });
    mo.observe(document.documentElement, { attributes: true, attributeFilter: ['data-theme'] });

    return () => {
      unbind();
      ro.disconnect();
      mo.disconnect();
      term.dispose();
      xtermRef.current = undefined;
    };
  }, [tabId, xtermRef]);

  useEffect(() => {
    if (!active) return;
    const x = xtermRef.current;
    requestAnimationFrame(() => {
      if (x) fitQuietly(x.fit);
      x?.term.focus();
    });
  }, [active, xtermRef]);

  return host;
}
