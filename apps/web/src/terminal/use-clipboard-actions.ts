/**
 * Copy and paste buttons of a terminal, with a short message when there is nothing to copy or the
 * browser refuses clipboard access (the keyboard shortcuts still work then).
 */
import { useEffect, useRef, useState, type RefObject } from 'react';

import type { Xterm } from './xterm-setup';

export interface ClipboardActions {
  /** what the last action said, shown for a moment */
  message: string | undefined;
  copy: () => Promise<void>;
  paste: () => Promise<void>;
}

export function useClipboardActions(xtermRef: RefObject<Xterm | undefined>): ClipboardActions {
  const [message, setMessage] = useState<string | undefined>();
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(
    () => () => {
      clearTimeout(timer.current);
    },
    [],
  );
  const flash = (text: string, ms: number): void => {
    setMessage(text);
    clearTimeout(timer.current);
    timer.current = setTimeout(() => {
      setMessage(undefined);
    }, ms);
  };

  return {
    message,
    copy: async () => {
      const sel = xtermRef.current?.term.getSelection() ?? '';
      if (sel === '') {
        flash('select text first', 1500);
        return;
      }
      try {
        await navigator.clipboard.writeText(sel);
        flash('copied', 1500);
      } catch {
        flash('copy blocked by the browser; use Ctrl+Shift+C', 1500);
      }
    },
    paste: async () => {
      try {
        const text = await navigator.clipboard.readText();
        xtermRef.current?.term.paste(text);
      } catch {
        flash('paste blocked by the browser; use Ctrl+Shift+V', 2000);
      }
      xtermRef.current?.term.focus();
    },
  };
}
