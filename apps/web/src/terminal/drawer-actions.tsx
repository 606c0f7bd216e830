/** The drawer's buttons: session details, end session, maximise or restore, hide. */
import { terminals, type DrawerState, type Tab } from './store';
import { isLive } from './tab-status';

export function DrawerActions({
  active,
  drawer,
  info,
  onToggleInfo,
}: {
  active: Tab;
  drawer: DrawerState;
  info: boolean;
  onToggleInfo: () => void;
}): React.JSX.Element {
  return (
    <div className="drawer-actions">
      <button
        type="button"
        className="btn small"
        aria-expanded={info}
        aria-controls={`info-${active.id}`}
        onClick={onToggleInfo}
      >
        info
      </button>
      {isLive(active) && active.stage === 'session' && (
        <button
          type="button"
          className="btn small"
          onClick={() => terminals.client(active.id)?.close()}
          title="End this session (the pod is deleted)"
        >
          end session
        </button>
      )}
      <button
        type="button"
        className="btn small"
        aria-pressed={drawer.maximised}
        onClick={() => {
          terminals.setDrawer({ maximised: !drawer.maximised });
        }}
      >
        {drawer.maximised ? 'restore' : 'maximise'}
      </button>
      <button
        type="button"
        className="btn small"
        aria-label="hide the terminal drawer (Ctrl+`)"
        onClick={() => {
          terminals.setDrawer({ open: false, maximised: false });
        }}
      >
        hide
      </button>
    </div>
  );
}
