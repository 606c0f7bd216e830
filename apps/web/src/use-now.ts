import { useEffect, useState } from 'react';

/** The current time, refreshed every `ms` while `enabled`. */
export function useNow(ms: number, enabled = true): number {
  const [now, setNow] = useState(Date.now);
  useEffect(() => {
    if (!enabled) return;
    setNow(Date.now());
    const t = setInterval(() => {
      setNow(Date.now());
    }, ms);
    return () => {
      clearInterval(t);
    };
  }, [ms, enabled]);
  return now;
}
