import { CLIENT_ERROR } from '@periscope/protocol';
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
  const [tick, setTick] = useState(0);
  /** the request whose answer (or failure) is in: loading is derived from it, never set by hand */
  const [settled, setSettled] = useState<string | undefined>();
  const reload = useCallback(() => {
    setTick((t) => t + 1);
  }, []);
  const request = path === undefined ? undefined : `${tick} ${path}`;

  useEffect(() => {
    if (path === undefined) return;
    let cancelled = false;
    get<T>(path)
      .then((d) => {
        if (cancelled) return;
        setData(d);
        setError(undefined);
      })
      .catch((err: unknown) => {
        if (cancelled) return;
        setError(err instanceof ApiError ? err : new ApiError(0, CLIENT_ERROR.network, String(err)));
      })
      .finally(() => {
        if (!cancelled) setSettled(request);
      });
    return () => {
      cancelled = true;
    };
  }, [path, request]);

  useEffect(() => {
    if (pollMs === undefined || path === undefined) return;
    const t = setInterval(() => {
      if (document.visibilityState === 'visible') reload();
    }, pollMs);
    return () => {
      clearInterval(t);
    };
  }, [pollMs, path, reload]);

  const loading = request !== undefined && settled !== request;
  return { data, error, loading, reload };
}
