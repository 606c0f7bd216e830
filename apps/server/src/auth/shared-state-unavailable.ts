import { ERROR_CODE } from '@periscope/protocol';

import { DomainError } from '../common/domain-error';

/** The `reason` of a 503 E_UNAVAILABLE answered because the shared state (Redis) did not answer. */
export const SHARED_STATE_UNAVAILABLE = 'shared_state_unavailable';

/**
 * A sign-in could not be looked up because Redis did not answer: 503, never 401. The person is
 * still signed in (their session waits in Redis): the same cookie works once Redis is back.
 */
export function sharedStateUnavailable(err: unknown): DomainError {
  const why = err instanceof Error ? err.message : String(err);
  return new DomainError(
    ERROR_CODE.unavailable,
    `the shared state of the server replicas (Redis) did not answer (${why.slice(0, 200)}), so your sign-in could not be checked; you are still signed in: try again in a few seconds`,
    { reason: SHARED_STATE_UNAVAILABLE },
  );
}

export function isSharedStateUnavailable(err: unknown): err is DomainError {
  return err instanceof DomainError && err.details['reason'] === SHARED_STATE_UNAVAILABLE;
}

/**
 * When to log an outage of the login store without one line per request: the first failure, then
 * at most one line per `everyMs` while it lasts (with how many requests were answered 503 since the
 * last line), and one line when a read succeeds again.
 */
export class OutageLog {
  private failingSince: number | undefined;
  private lastLine = 0;
  private refusedSinceLine = 0;

  constructor(private readonly everyMs = 30_000) {}

  /** A failed read at `now`: whether to log it, and the refusals the line stands for. */
  failed(now: number): { log: boolean; refused: number; sinceMs: number } {
    this.refusedSinceLine++;
    const first = this.failingSince === undefined;
    if (this.failingSince === undefined) this.failingSince = now;
    const sinceMs = now - this.failingSince;
    if (!first && now - this.lastLine < this.everyMs)
      return { log: false, refused: this.refusedSinceLine, sinceMs };
    const refused = this.refusedSinceLine;
    this.lastLine = now;
    this.refusedSinceLine = 0;
    return { log: true, refused, sinceMs };
  }

  /** A read that worked at `now`: the outage's length when one just ended (log it), else undefined. */
  succeeded(now: number): number | undefined {
    if (this.failingSince === undefined) return undefined;
    const lasted = now - this.failingSince;
    this.failingSince = undefined;
    this.refusedSinceLine = 0;
    return lasted;
  }
}
