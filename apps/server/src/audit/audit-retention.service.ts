import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';

import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { AuditLog } from './audit-log';

export const AUDIT_RETENTION_INTERVAL_MS = 60 * 60_000;

/** Applies the audit retention (age, then size) at start and every hour. */
@Injectable()
export class AuditRetentionService implements OnApplicationBootstrap, OnApplicationShutdown {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly store: AuditLog,
    private readonly log: PinoLogger,
  ) {}

  onApplicationBootstrap(): void {
    void this.run();
    this.timer = setInterval(() => void this.run(), AUDIT_RETENTION_INTERVAL_MS);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private readonly extra: (() => Promise<unknown>)[] = [];

  /** Another store kept by the same schedule (session recordings). */
  also(run: () => Promise<unknown>): void {
    this.extra.push(run);
  }

  async run(): Promise<void> {
    for (const r of this.extra)
      await r().catch((err: unknown) => {
        this.log.error({ err: (err as Error).message }, 'retention of session recordings failed');
      });
    // The policy only: config.audit also holds the database settings.
    const { retentionDays, maxBytes } = this.config.audit;
    try {
      const r = await this.store.prune({ retentionDays, maxBytes });
      if (r.deletedByAge + r.deletedBySize > 0)
        this.log.info({ ...r, retentionDays, maxBytes }, 'audit retention deleted old events');
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'audit retention failed');
    }
  }
}
