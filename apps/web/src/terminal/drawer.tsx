/**
 * The terminal drawer shared by cluster shells and pod execs: tabs, a status pill, an info
 * expander, banners (provisioning, idle warning, reconnecting, ended, errors with what to do), and
 * the lazily loaded xterm body. Resizable by its drag handle (mouse or arrow keys) and maximisable;
 * Ctrl+` shows or hides it. The pieces live beside this file; this one lays them out.
 */
import { useState } from 'react';

import { useNow } from '../use-now';
import { DrawerActions } from './drawer-actions';
import { DrawerHandle } from './drawer-handle';
import { DrawerTabs } from './drawer-tabs';
import { terminals, type Tab } from './store';
import { TabPanel } from './tab-panel';
import { isLive, pill } from './tab-status';
import { useDrawerShortcut } from './use-drawer-shortcut';
import { useTerminals } from './use-terminals';

export function Drawer(): React.JSX.Element | null {
  const { tabs, activeId, drawer } = useTerminals();
  const [info, setInfo] = useState(false);
  const now = useNow(1000, tabs.length > 0 && drawer.open);
  useDrawerShortcut();

  if (tabs.length === 0) return null;
  const active = tabs.find((t) => t.id === activeId) ?? tabs[0];
  if (!active) return null;
  if (!drawer.open) return <CollapsedDrawer tabs={tabs} active={active} now={now} />;

  const p = pill(active, now);
  return (
    <section
      className={`drawer${drawer.maximised ? ' maximised' : ''}`}
      style={drawer.maximised ? undefined : { height: drawer.height }}
      aria-label="terminals"
    >
      <DrawerHandle drawer={drawer} />
      <div className="drawer-chrome">
        <DrawerTabs tabs={tabs} activeId={active.id} now={now} />
        <span
          className={`status-pill ${p.tone}`}
          role="status"
          aria-live="polite"
          data-testid="status-pill"
          title={p.text}
        >
          {p.text}
        </span>
        <DrawerActions
          active={active}
          drawer={drawer}
          info={info}
          onToggleInfo={() => {
            setInfo(!info);
          }}
        />
      </div>
      {tabs.map((t) => (
        <TabPanel
          key={t.id}
          tab={t}
          active={t.id === active.id}
          info={info && t.id === active.id}
          now={now}
        />
      ))}
      {!tabs.some(isLive) && <span className="sr-only">no live terminal</span>}
    </section>
  );
}

/** The hidden drawer: one bar with the count, the active tab and its status; a click shows it. */
function CollapsedDrawer({
  tabs,
  active,
  now,
}: {
  tabs: Tab[];
  active: Tab;
  now: number;
}): React.JSX.Element {
  const p = pill(active, now);
  return (
    <section className="drawer collapsed" aria-label="terminals">
      <button
        type="button"
        className="drawer-bar"
        onClick={() => {
          terminals.setDrawer({ open: true });
        }}
        aria-expanded="false"
      >
        <span className={`dot ${p.tone}`} aria-hidden="true" />
        <span>
          {tabs.length} terminal{tabs.length === 1 ? '' : 's'} · {active.label} · {p.text}
        </span>
        <span className="muted small">show (Ctrl+`)</span>
      </button>
    </section>
  );
}
