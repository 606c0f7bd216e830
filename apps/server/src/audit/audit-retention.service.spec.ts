import type { PinoLogger } from 'nestjs-pino';
import { afterEach, describe, expect, it, vi } from 'vitest';

import type { ServerConfig } from '../config/server-config';
import { AUDIT_RETENTION_INTERVAL_MS, AuditRetentionService } from './audit-retention.service';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { SqliteAuditLog, type AuditLog } from './audit-log';
import { AuditStore, type PruneResult, type RetentionPolicy } from './audit-store';

afterEach(() => {
  vi.useRealTimers();
});

describe(AuditRetentionService.name, () => {
  it('prunes at start and hourly with the configured policy, logs, and stops on shutdown', async () => {
    vi.useFakeTimers();
    const calls: RetentionPolicy[] = [];
    let fail = false;
    const store = {
      prune: (p: RetentionPolicy): Promise<PruneResult> => {
        calls.push(p);
        return fail
          ? Promise.reject(new Error('disk I/O error'))
          : Promise.resolve({ deletedByAge: 2, deletedBySize: 0, bytes: 4096 });
      },
    } as unknown as AuditLog;
    const info = vi.fn();
    const error = vi.fn();
    const log = { info, error } as unknown as PinoLogger;
    // The database settings in config.audit are not part of the policy, nor of the log line.
    const config = {
      audit: { retentionDays: 30, maxBytes: 1024, postgres: { url: 'postgres://u@db/p', password: 'pw' } },
    } as ServerConfig;
    const service = new AuditRetentionService(config, store, log);

    service.onApplicationBootstrap();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toEqual([{ retentionDays: 30, maxBytes: 1024 }]);
    expect(info).toHaveBeenCalledWith(
      { deletedByAge: 2, deletedBySize: 0, bytes: 4096, retentionDays: 30, maxBytes: 1024 },
      'audit retention deleted old events',
    );
    fail = true;
    await vi.advanceTimersByTimeAsync(AUDIT_RETENTION_INTERVAL_MS);
    expect(calls).toHaveLength(2);
    expect(error).toHaveBeenCalledWith({ err: 'disk I/O error' }, 'audit retention failed');
    service.onApplicationShutdown();
    await vi.advanceTimersByTimeAsync(3 * AUDIT_RETENTION_INTERVAL_MS);
    expect(calls).toHaveLength(2);
  });

  it('prunes the embedded SQLite store through the port, once per run', async () => {
    const config = { audit: { retentionDays: 1, maxBytes: 1024 ** 3 } } as ServerConfig;
    const info = vi.fn();
    const log = { info, error: vi.fn() } as unknown as PinoLogger;
    const clock = { now: Date.parse('2025-03-01T00:00:00.000Z') };
    const local = new AuditStore(join(mkdtempSync(join(tmpdir(), 'retention-')), 'audit.db'), {
      sink: () => undefined,
      now: () => clock.now,
    });
    try {
      local.write({ verb: 'exec_open', actor: 'a', cluster: 'c', sessionId: 's1', body: {} });
      clock.now += 2 * 86_400_000;
      const prune = vi.spyOn(local, 'prune');
      await new AuditRetentionService(config, new SqliteAuditLog(local), log).run();
      expect(prune).toHaveBeenCalledTimes(1);
      expect(local.count()).toBe(0);
      expect(info).toHaveBeenCalledWith(
        expect.objectContaining({ deletedByAge: 1 }),
        'audit retention deleted old events',
      );
    } finally {
      local.close();
    }
  });
});
