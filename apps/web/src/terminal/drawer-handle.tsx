/** The drag handle on top of the drawer: resizes it by pointer or arrow keys (Shift: larger steps). */
import { useRef, type KeyboardEvent, type PointerEvent } from 'react';

import { MIN_DRAWER, terminals, type DrawerState } from './store';

function maxHeight(): number {
  return Math.max(MIN_DRAWER, Math.round(window.innerHeight * 0.8));
}

export function DrawerHandle({ drawer }: { drawer: DrawerState }): React.JSX.Element {
  const drag = useRef<{ y: number; h: number } | undefined>(undefined);

  const onPointerDown = (e: PointerEvent<HTMLDivElement>): void => {
    drag.current = { y: e.clientY, h: drawer.height };
    e.currentTarget.setPointerCapture(e.pointerId);
  };
  const onPointerMove = (e: PointerEvent<HTMLDivElement>): void => {
    if (!drag.current) return;
    const h = Math.min(maxHeight(), Math.max(MIN_DRAWER, drag.current.h + (drag.current.y - e.clientY)));
    terminals.setDrawer({ height: h, maximised: false });
  };
  const onPointerUp = (): void => {
    drag.current = undefined;
  };
  const onKeyDown = (e: KeyboardEvent<HTMLDivElement>): void => {
    const step = e.shiftKey ? 80 : 20;
    if (e.key === 'ArrowUp')
      terminals.setDrawer({ height: Math.min(maxHeight(), drawer.height + step), maximised: false });
    else if (e.key === 'ArrowDown')
      terminals.setDrawer({ height: Math.max(MIN_DRAWER, drawer.height - step), maximised: false });
    else return;
    e.preventDefault();
  };

  return (
    <div
      className="drawer-handle"
      role="separator"
      aria-orientation="horizontal"
      aria-label="resize the terminal drawer"
      aria-valuenow={Math.round(drawer.height)}
      aria-valuemin={MIN_DRAWER}
      aria-valuemax={maxHeight()}
      tabIndex={0}
      onPointerDown={onPointerDown}
      onPointerMove={onPointerMove}
      onPointerUp={onPointerUp}
      onPointerCancel={onPointerUp}
      onKeyDown={onKeyDown}
      onDoubleClick={() => {
        terminals.setDrawer({ maximised: !drawer.maximised });
      }}
    />
  );
}
