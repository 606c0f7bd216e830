import { useEffect } from 'react';

import { terminals } from './store';

/** Ctrl+` (⌘+` on a Mac) shows or hides the drawer while any terminal is open, wherever the focus is. */
export function useDrawerShortcut(): void {
  useEffect(() => {
    const onKey = (e: KeyboardEvent): void => {
      if (
        (e.ctrlKey || e.metaKey) &&
        (e.key === '`' || e.code === 'Backquote') &&
        terminals.getSnapshot().tabs.length > 0
      ) {
        e.preventDefault();
        e.stopPropagation();
        terminals.setDrawer({ open: !terminals.getSnapshot().drawer.open });
      }
    };
    window.addEventListener('keydown', onKey, true);
    return () => {
      window.removeEventListener('keydown', onKey, true);
    };
  }, []);
}
