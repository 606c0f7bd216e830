/** The tab strip of the drawer: one tab per terminal (status dot, cluster, label) and its close button. */
import { terminals, type Tab } from './store';
import { pill } from './tab-status';

export function DrawerTabs({
  tabs,
  activeId,
  now,
}: {
  tabs: Tab[];
  activeId: string;
  now: number;
}): React.JSX.Element {
  return (
    <div className="tabs" role="tablist" aria-label="open terminals">
      {tabs.map((t) => {
        const tp = pill(t, now);
        const selected = t.id === activeId;
        return (
          <div key={t.id} className={`tab${selected ? ' selected' : ''}`}>
            <button
              type="button"
              role="tab"
              id={`tab-${t.id}`}
              aria-selected={selected}
              aria-controls={`panel-${t.id}`}
              className="tab-button"
              title={`${t.spec.cluster}${t.spec.namespace ? ` · ${t.spec.namespace}` : ''} · ${t.label} · ${tp.text}`}
              onClick={() => {
                terminals.activate(t.id);
              }}
            >
              <span className={`dot ${tp.tone}`} aria-hidden="true" />
              <span className="tab-cluster">{t.spec.cluster}</span>
              <span className="tab-label">{t.label}</span>
            </button>
            <button
              type="button"
              className="tab-close"
              aria-label={`close ${t.label} on ${t.spec.cluster}`}
              onClick={() => {
                terminals.close(t.id);
              }}
            >
              ×
            </button>
          </div>
        );
      })}
    </div>
  );
}
