import { describe, expect, it } from 'vitest';

import { parseRecord, takeOverPlan, type RehomeRecord } from './rehome-store';

const RECORD: RehomeRecord = {
  v: 1,
  sessionId: 's-1',
  kind: 'cluster_shell',
  cluster: 'edge',
  streamId: 2,
  subject: 'alice',
  tier: 'admin',
  startedAt: 1_765_000_000_000,
  maxEndsAt: 1_765_028_800_000,
  capPool: 'cluster_shell',
  owner: 'B',
  epoch: 1,
};

const orphan = (o: { outFrom?: number; outTo?: number; streamId?: number; sessionId?: string } = {}) => ({
  streamId: o.streamId ?? 2,
  sessionId: o.sessionId ?? 's-1',
  rx: { 0: 12 },
  ...(o.outFrom !== undefined ? { outFrom: o.outFrom } : {}),
  ...(o.outTo !== undefined ? { outTo: o.outTo } : {}),
});

describe('takeOverPlan', () => {
  it('restarts from the oldest kept byte, never more than one resume buffer back', () => {
    expect(takeOverPlan(orphan({ outFrom: 100, outTo: 900 }), RECORD, 'edge', 1024)).toEqual({
      ok: true,
      outFrom: 100,
      outTo: 900,
    });
    expect(takeOverPlan(orphan({ outFrom: 0, outTo: 5000 }), RECORD, 'edge', 1024)).toEqual({
      ok: true,
      outFrom: 5000 - 1024,
      outTo: 5000,
    });
  });

  it('refuses a stream without a window, of another session or stream, on another cluster, or inverted', () => {
    expect(takeOverPlan(orphan({}), RECORD, 'edge', 1024)).toMatchObject({
      ok: false,
      reason: /kept no output/,
    });
    expect(takeOverPlan(orphan({ outFrom: 0, outTo: 1, streamId: 4 }), RECORD, 'edge', 1024)).toMatchObject({
      ok: false,
    });
    expect(
      takeOverPlan(orphan({ outFrom: 0, outTo: 1, sessionId: 'x' }), RECORD, 'edge', 1024),
    ).toMatchObject({ ok: false });
    expect(takeOverPlan(orphan({ outFrom: 0, outTo: 1 }), RECORD, 'other', 1024)).toMatchObject({
      ok: false,
      reason: /another cluster/,
    });
    expect(takeOverPlan(orphan({ outFrom: 9, outTo: 1 }), RECORD, 'edge', 1024)).toMatchObject({
      ok: false,
      reason: /inverted/,
    });
  });
});

describe('parseRecord', () => {
  it('reads back what was written; a null tier stays null', () => {
    expect(parseRecord(JSON.stringify(RECORD))).toEqual(RECORD);
    expect(parseRecord(JSON.stringify({ ...RECORD, tier: null }))?.tier).toBeNull();
  });

  it('refuses what is not a record of ours', () => {
    expect(parseRecord('not json')).toBeUndefined();
    expect(parseRecord('null')).toBeUndefined();
    expect(parseRecord(JSON.stringify({ ...RECORD, v: 2 }))).toBeUndefined();
    expect(parseRecord(JSON.stringify({ ...RECORD, streamId: '2' }))).toBeUndefined();
    expect(parseRecord(JSON.stringify({ ...RECORD, epoch: 1.5 }))).toBeUndefined();
  });
});
