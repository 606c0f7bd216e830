/**
 * Connects an xterm to a tab's session in the store: keystrokes and binary input go to the tab's
 * SessionClient, output comes from the store's sink (buffered output first), and the terminal's
 * size follows it (resize frames debounced 80 ms). Free of React.
 */
import type { Terminal } from '@xterm/xterm';

import { terminals } from './store';

const RESIZE_DEBOUNCE_MS = 80;

/** Binds `term` to tab `tabId`; answers the unbinding. */
export function bindTerminalToTab(term: Terminal, tabId: string, readText: () => string): () => void {
  // Looked up on every use: a retry in the same tab replaces the client.
  const client = (): ReturnType<typeof terminals.client> => terminals.client(tabId);
  client()?.resize(term.cols, term.rows);

  let resizeTimer: ReturnType<typeof setTimeout> | undefined;
  const onResize = term.onResize(({ cols, rows }) => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      client()?.resize(cols, rows);
    }, RESIZE_DEBOUNCE_MS);
  });
  const onData = term.onData((d) => {
    client()?.sendInput(d);
  });
  const onBinary = term.onBinary((d) => {
    const bytes = new Uint8Array(d.length);
    for (let i = 0; i < d.length; i++) bytes[i] = d.charCodeAt(i) & 0xff;
    client()?.sendInput(bytes);
  });
  const detach = terminals.attachSink(
    tabId,
    (bytes) => {
      term.write(bytes);
    },
    readText,
  );

  return () => {
    detach();
    clearTimeout(resizeTimer);
    onResize.dispose();
    onData.dispose();
    onBinary.dispose();
  };
}
