import { describe, expect, it } from 'vitest';

import { endedByFields, type SessionEnd } from './terminal-session';

describe('ended sessions', () => {
  it('close record fields: ended_by and end_reason only for a session ended on request', () => {
    const end: SessionEnd = { reason: 'idle', exitCode: null, bytesIn: 0, bytesOut: 0, durationMs: 1 };
    expect(endedByFields(end)).toEqual({});
    expect(endedByFields({ ...end, reason: 'ended_by_admin', endedBy: { by: 'root' } })).toEqual({
      ended_by: 'root',
    });
    expect(endedByFields({ ...end, endedBy: { by: 'root', reason: 'why' } })).toEqual({
      ended_by: 'root',
      end_reason: 'why',
    });
  });
});
