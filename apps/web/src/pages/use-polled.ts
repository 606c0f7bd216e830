import { CLIENT_ERROR } from '@periscope/protocol';
import { useCallback, useEffect, useRef, useState } from 'react';

import { ApiError, get } from '../api';
import { nextPollDelay, type PollSchedule } from './sessions-logic';

export interface Polled<T> {
  data: T | undefined;
  /** the last refresh's failure (data, if any, is from before it) */
  error: ApiError | undefined;
  /** no answer yet (first load) */
  loading: boolean;
  /** a refresh is in flight */
  refreshing: boolean;
  /** failed refreshes in a row */
  failures: number;
  /** when the next refresh is due (epoch ms), undefined while one is in flight */
  nextAt: number | undefined;
  /** refresh now (and start the schedule over) */
  reload: () => void;
}

/**
 * GETs `path` now and then again on a schedule: every `everyMs` while it succeeds, backing off
 * (doubling, up to `maxMs`) while it fails. One request at a time and one timer; a hidden tab
 * waits until it is visible again before the next request.
 */
export function usePolled<T>(path: string, schedule: PollSchedule): Polled<T> {
  const [data, setData] = useState<T | undefined>();
  const [error, setError] = useState<ApiError | undefined>();
  const [failures, setFailures] = useState(0);
  const [refreshing, setRefreshing] = useState(true);
  const [nextAt, setNextAt] = useState<number | undefined>();
  const [kick, setKick] = useState(0);
  const failuresRef = useRef(0);

  const reload = useCallback(() => {
    setKick((k) => k + 1);
  }, []);

  useEffect(() => {
    let cancelled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const schedule_ = (ms: number): void => {
      setNextAt(Date.now() + ms);
      timer = setTimeout(tick, ms);
    };
    const tick = (): void => {
      if (cancelled) return;
      if (document.visibilityState !== 'visible') {
        // Nothing is fetched for a hidden tab; look again shortly.
        schedule_(schedule.everyMs);
        return;
      }
      setRefreshing(true);
      setNextAt(undefined);
      get<T>(path)
        .then((d) => {
          if (cancelled) return;
          failuresRef.current = 0;
          setData(d);
          setError(undefined);
        })
        .catch((err: unknown) => {
          if (cancelled) return;
          failuresRef.current++;
          setError(err instanceof ApiError ? err : new ApiError(0, CLIENT_ERROR.network, String(err)));
        })
        .finally(() => {
          if (cancelled) return;
          setRefreshing(false);
          setFailures(failuresRef.current);
          schedule_(nextPollDelay(failuresRef.current, schedule));
        });
    };
    tick();
    return () => {
      cancelled = true;
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [path, schedule, kick]);

  return {
    data,
    error,
    loading: data === undefined && error === undefined,
    refreshing,
    failures,
    nextAt,
    reload,
  };
}
