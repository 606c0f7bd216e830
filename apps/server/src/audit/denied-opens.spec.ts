import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ERROR_CODE } from '@periscope/protocol';
import { Metrics } from '@periscope/observability';
import type { PinoLogger } from 'nestjs-pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { DomainError } from '../common/domain-error';
import { SqliteAuditLog } from './audit-log';
import { AuditStore } from './audit-store';
import { DENIED_BURST, DENIED_REFILL_MS, DENIED_VERB, DeniedOpens, type DeniedOpen } from './denied-opens';

const log = { warn: vi.fn(), error: vi.fn() } as unknown as PinoLogger;
const forbidden = (): DomainError => new DomainError(ERROR_CODE.forbidden, 'your tier may not');
const open = (subject: string | undefined, extra: Partial<DeniedOpen> = {}): DeniedOpen => ({
  verb: DENIED_VERB.clusterShell,
  subject,
  tier: 'read',
  cluster: 'lab',
  ...extra,
});

describe(DeniedOpens.name, () => {
  let store: AuditStore;
  let metrics: Metrics;
  let sut: DeniedOpens;

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2030-01-01T00:00:00Z'));
    store = new AuditStore(join(mkdtempSync(join(tmpdir(), 'periscope-denied-')), 'audit.db'), {
      sink: () => undefined,
    });
    metrics = new Metrics();
    sut = new DeniedOpens(new SqliteAuditLog(store), metrics, log);
  });

  afterEach(() => {
    store.close();
    vi.useRealTimers();
  });

  const dropped = async (): Promise<number> =>
    (await metrics.registry.getSingleMetric('periscope_audit_denied_dropped_total')?.get())?.values.reduce(
      (n, v) => n + v.value,
      0,
    ) ?? 0;

  it('stores the code, reason, tier, subject and clipped target fields', () => {
    sut.record(new DomainError(ERROR_CODE.capUser, 'too many', { limit: 2, activeSessions: [] }), {
      verb: DENIED_VERB.podExec,
      subject: 'alice',
      tier: 'admin',
      cluster: 'lab',
      target: { namespace: 'web', pod: 'p'.repeat(5_000), container: undefined },
    });
    const [e] = store.query({ limit: 10 }).events;
    expect(e).toMatchObject({
      verb: 'exec_denied',
      actor: 'alice',
      cluster: 'lab',
      sessionId: '',
      outcome: 'error',
      body: { code: 'E_CAP_USER', reason: 'too many', tier: 'admin', namespace: 'web', limit: 2 },
    });
    expect(e?.body).not.toHaveProperty('container');
    expect(e?.body).not.toHaveProperty('activeSessions');
    expect(String(e?.body['pod']).length).toBeLessThan(300);
  });

  it('skips input errors, sign-in errors, non-domain errors and refusals without a subject', () => {
    sut.record(new DomainError(ERROR_CODE.badRequest, 'bad'), open('alice'));
    sut.record(new DomainError(ERROR_CODE.auth, 'sign in'), open('alice'));
    sut.record(new Error('bug'), open('alice'));
    sut.record(forbidden(), open(undefined));
    expect(store.count()).toBe(0);
  });

  it('bounds each subject to a burst, then one per refill interval, counting and reporting the dropped', async () => {
    for (let i = 0; i < DENIED_BURST + 30; i++) sut.record(forbidden(), open('mallory'));
    sut.record(forbidden(), open('alice')); // another subject has its own bucket
    expect(store.count()).toBe(DENIED_BURST + 1);
    expect(await dropped()).toBe(30);

    vi.setSystemTime(Date.now() + DENIED_REFILL_MS);
    sut.record(forbidden(), open('mallory'));
    sut.record(forbidden(), open('mallory'));
    const mine = store.query({ actor: 'mallory', limit: 100 }).events;
    expect(mine).toHaveLength(DENIED_BURST + 1);
    expect(mine[0]?.body['dropped_before']).toBe(30);
    expect(await dropped()).toBe(31);

    // An hour of hammering at 10 a second stores one record per interval, not 36,000.
    const before = store.count();
    for (let s = 0; s < 3_600; s++) {
      vi.setSystemTime(Date.now() + 1_000);
      for (let i = 0; i < 10; i++) sut.record(forbidden(), open('mallory'));
    }
    expect(store.count() - before).toBeLessThanOrEqual(3_600_000 / DENIED_REFILL_MS + 1);
  });
});
