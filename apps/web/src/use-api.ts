import { useCallback, useEffect, useState } from 'react';

import { ApiError, get } from './api';

export interface Loaded<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  reload: () => void;
}

/** GETs `path` (when defined), again on `reload()` and every `pollMs` while the tab is visible. */
export function useApi<T>(path: string | undefined, pollMs?: number): Loaded<T> {
  const [data, setData] = useState<T | undefined>();
  const [error, setError] = useState<ApiError | undefined>();
  const [loading, setLoading] = useState(path !== undefined);
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => {
    setTick((t) => t + 1);
  }, []);

  useEffect(() => {
    if (path === undefined) return;
    let cancelled = false;
    setLoading(true);
    get<T>(path)
      .then((d) => {
        if (cancelled) return;
        setData(d);
        setError(undefined);
      })
      .catch((err: unknown) => {
        if (cancelled) return;
        setError(err instanceof ApiError ? err : new ApiError(0, 'E_NETWORK', String(err)));
      })
      .finally(() => {
        if (!cancelled) setLoading(false);
      });
    return () => {
      cancelled = true;
    };
  }, [path, tick]);

  useEffect(() => {
    if (pollMs === undefined || path === undefined) return;
    const t = setInterval(() => {
      if (document.visibilityState === 'visible') reload();
    }, pollMs);
    return () => {
      clearInterval(t);
    };
  }, [pollMs, path, reload]);

  return { data, error, loading, reload };
}
