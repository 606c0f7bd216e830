import type { PinoLogger } from 'nestjs-pino';
import { afterEach, describe, expect, it, vi } from 'vitest';

import type { ServerConfig } from '../config/server-config';
import { AUDIT_RETENTION_INTERVAL_MS, AuditRetentionService } from './audit-retention.service';
import type { AuditStore, PruneResult, RetentionPolicy } from './audit-store';

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
    } as unknown as AuditStore;
    const info = vi.fn();
    const error = vi.fn();
    const log = { info, error } as unknown as PinoLogger;
    const config = { audit: { retentionDays: 30, maxBytes: 1024 } } as ServerConfig;
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
});
