import { ERROR_CODE } from '@periscope/protocol';
import { describe, expect, it } from 'vitest';

import { DomainError, HTTP_STATUS } from '../common/domain-error';
import {
  isSharedStateUnavailable,
  OutageLog,
  SHARED_STATE_UNAVAILABLE,
  sharedStateUnavailable,
} from './shared-state-unavailable';

describe('sharedStateUnavailable', () => {
  it('is 503 E_UNAVAILABLE with the reason and says the sign-in is intact, never 401', () => {
    const e = sharedStateUnavailable(new Error('Connection is closed.'));
    expect(e.code).toBe(ERROR_CODE.unavailable);
    expect(HTTP_STATUS[e.code]).toBe(503);
    expect(e.details).toEqual({ reason: SHARED_STATE_UNAVAILABLE });
    expect(e.message).toMatch(/Redis\) did not answer \(Connection is closed\.\)/);
    expect(e.message).toMatch(/still signed in: try again in a few seconds/);
    expect(isSharedStateUnavailable(e)).toBe(true);
  });

  it('keeps a long driver message short and tells other errors apart', () => {
    expect(sharedStateUnavailable('x'.repeat(5_000)).message.length).toBeLessThan(400);
    expect(isSharedStateUnavailable(new DomainError(ERROR_CODE.unavailable, 'table full'))).toBe(false);
    expect(isSharedStateUnavailable(new DomainError(ERROR_CODE.auth, 'sign in first'))).toBe(false);
    expect(isSharedStateUnavailable(new Error('boom'))).toBe(false);
  });
});

describe('OutageLog', () => {
  it('logs the first failure, then at most once per period with the refusals counted, and the recovery once', () => {
    const o = new OutageLog(30_000);
    expect(o.failed(1_000)).toEqual({ log: true, refused: 1, sinceMs: 0 });
    expect(o.failed(2_000)).toEqual({ log: false, refused: 1, sinceMs: 1_000 });
    expect(o.failed(20_000)).toEqual({ log: false, refused: 2, sinceMs: 19_000 });
    // 30 s after the last line: one line standing for the three refusals since.
    expect(o.failed(31_000)).toEqual({ log: true, refused: 3, sinceMs: 30_000 });
    expect(o.failed(32_000).log).toBe(false);
    expect(o.succeeded(40_000)).toBe(39_000);
    // Nothing to report while it works.
    expect(o.succeeded(41_000)).toBeUndefined();
    // A new outage logs at once, counted from its own start.
    expect(o.failed(42_000)).toEqual({ log: true, refused: 1, sinceMs: 0 });
  });
});
