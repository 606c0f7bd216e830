import { useSyncExternalStore } from 'react';

import { terminals, type Snapshot } from './store';

/** The open terminals and the drawer, re-rendering on every change of the store. */
export function useTerminals(): Snapshot {
  return useSyncExternalStore(terminals.subscribe, terminals.getSnapshot);
}
