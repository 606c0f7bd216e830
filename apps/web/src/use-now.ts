import { useEffect, useState } from 'react';

/** The current time, refreshed every `ms` while `enabled` (and right away when it turns on). */
export function useNow(ms: number, enabled = true): number {
  const [now, setNow] = useState(Date.now);
  useEffect(() => {
    if (!enabled) return;
    const tick = (): void => {
      setNow(Date.now());
    };
    // The clock may have stood still while disabled: catch up at once, then tick.
    const first = setTimeout(tick, 0);
    const t = setInterval(tick, ms);
    return () => {
      clearTimeout(first);
      clearInterval(t);
    };
  }, [ms, enabled]);
  return now;
}
