/**
 * The xterm.js terminal of one tab, loaded on demand (this module and xterm are a separate chunk).
 * The terminal's lifecycle and its link to the tab's session live in useTerminalSession; search,
 * copy/paste and font size in a small toolbar above it.
 */
import '@xterm/xterm/css/xterm.css';

import { useRef, useState, type RefObject } from 'react';

import { TerminalToolbar } from './terminal-toolbar';
import { useClipboardActions } from './use-clipboard-actions';
import { useScrollbackSearch } from './use-scrollback-search';
import { useTerminalSession } from './use-terminal-session';
import { fitQuietly, storedFontSize, storeFontSize, type Xterm } from './xterm-setup';

export interface TerminalViewProps {
  tabId: string;
  active: boolean;
}

export default function TerminalView({ tabId, active }: TerminalViewProps): React.JSX.Element {
  const xtermRef = useRef<Xterm | undefined>(undefined);
  const search = useScrollbackSearch(xtermRef);
  const host = useTerminalSession({ tabId, active, xtermRef, onFindShortcut: search.show });
  const clipboard = useClipboardActions(xtermRef);
  const [fontSize, setFontSize] = useState(storedFontSize);

  const onFontStep = (delta: number): void => {
    const size = storeFontSize(fontSize + delta);
    setFontSize(size);
    applyFontSize(xtermRef, size);
  };

  return (
    <div className="term-view" hidden={!active}>
      <TerminalToolbar
        search={search}
        fontSize={fontSize}
        onFontStep={onFontStep}
        onCopy={() => void clipboard.copy()}
        onPaste={() => void clipboard.paste()}
        message={clipboard.message}
      />
      <div className="term-host" ref={host} data-testid={`terminal-${tabId}`} />
    </div>
  );
}

function applyFontSize(xtermRef: RefObject<Xterm | undefined>, size: number): void {
  const x = xtermRef.current;
  if (!x) return;
  x.term.options.fontSize = size;
  fitQuietly(x.fit);
}
