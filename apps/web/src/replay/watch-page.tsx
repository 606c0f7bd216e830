/**
 * An admin watching someone's live session (WebSocket /api/sessions/{id}/watch): the output as it
 * happens, read-only. Keystrokes typed here are sent only to be refused by the server (and said
 * so), never to the session; the banner names everyone watching.
 */
import '@xterm/xterm/css/xterm.css';

import { parseServerFrame } from '@periscope/protocol';
import { useEffect, useRef, useState } from 'react';

import { bufferText, openXterm } from '../terminal/xterm-setup';
import { sizeOf } from './cast';

declare global {
  interface Window {
    __periscopeWatch?: { text: () => string };
  }
}

export function WatchPage({ sessionId }: { sessionId: string }): React.JSX.Element {
  const host = useRef<HTMLDivElement>(null);
  const [watchers, setWatchers] = useState<string[]>([]);
  const [title, setTitle] = useState('');
  const [notice, setNotice] = useState<string>();
  const [ended, setEnded] = useState<string>();

  useEffect(() => {
    if (!host.current) return;
    const x = openXterm(host.current);
    x.term.options.cursorBlink = false;
    window.__periscopeWatch = { text: () => bufferText(x.term) };
    const proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(
      `${proto}//${window.location.host}/api/sessions/${encodeURIComponent(sessionId)}/watch`,
    );
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (m: MessageEvent<ArrayBuffer | string>) => {
      if (typeof m.data !== 'string') {
        x.term.write(new Uint8Array(m.data));
        return;
      }
      const f = parseServerFrame(m.data);
      if (!f) return;
      if (f.type === 'hello')
        setTitle(`${f.kind === 'cluster_shell' ? 'cluster shell' : 'pod exec'} on ${f.cluster}`);
      else if (f.type === 'watch') setWatchers(f.watchers);
      else if (f.type === 'status' && f.phase === 'size') {
        const size = sizeOf(f.message);
        if (size) x.term.resize(size.cols, size.rows);
      } else if (f.type === 'error') setNotice(`${f.code}: ${f.message}`);
      else if (f.type === 'closed') setEnded(f.reason);
    };
    ws.onclose = (e) => {
      setEnded((prev) => prev ?? (e.reason || `the watch connection closed (${e.code})`));
    };
    // Typing here is sent so the server can refuse it visibly; it never reaches the session.
    const keys = x.term.onData((d) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(new TextEncoder().encode(d));
    });
    return () => {
      keys.dispose();
      ws.close(1000, 'watcher left');
      window.__periscopeWatch = undefined;
      x.term.dispose();
    };
  }, [sessionId]);

  return (
    <div className="page">
      <div className="page-head">
        <h1>
          Watching <code>{sessionId.slice(0, 8)}</code>{' '}
          {title && <span className="muted small">{title}</span>}
        </h1>
      </div>
      <div className="banner watch" role="status" data-testid="watch-banner">
        <span>
          read-only live view; watching now: <strong>{watchers.join(', ') || '—'}</strong>. The operator sees
          that you are watching.
        </span>
      </div>
      {notice && (
        <div className="banner warn" role="alert" data-testid="watch-notice">
          <span>{notice}</span>
        </div>
      )}
      {ended && (
        <div className="banner idle" role="status" data-testid="watch-ended">
          <span>watch ended: {ended}</span>
        </div>
      )}
      <div className="replay-screen term-host" ref={host} data-testid="watch-screen" />
    </div>
  );
}
