import { join } from 'node:path';

import { Global, Inject, Logger, Module, type OnApplicationShutdown } from '@nestjs/common';

import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { AuditLog, SqliteAuditLog } from './audit-log';
import { AuditRetentionService } from './audit-retention.service';
import { AuditStore, stdoutSink } from './audit-store';
import { AuditController } from './audit.controller';
import { DeniedOpens } from './denied-opens';
import { PostgresAuditStore, redactDatabaseUrl } from './postgres-audit-store';

/** The PERISCOPE_DATABASE_URL the store connects with: the URL with its password put back. */
export function postgresUrl(p: { url: string; password?: string }): string {
  if (p.password === undefined) return p.url;
  const u = new URL(p.url);
  u.password = encodeURIComponent(p.password);
  return u.toString();
}

/**
 * The audit store: {@link AuditLog} (the port) is PostgreSQL when PERISCOPE_DATABASE_URL is set,
 * else the embedded SQLite {@link AuditStore} under PERISCOPE_DATA_DIR (today's behaviour, one
 * process). Every writer and reader goes through the port; {@link AuditStore} is provided too (the
 * SQLite store behind the port, for tests that read it directly), and is null with PostgreSQL.
 */
@Global()
@Module({
  controllers: [AuditController],
  providers: [
    {
      provide: AuditStore,
      inject: [SERVER_CONFIG],
      useFactory: (c: ServerConfig): AuditStore | null =>
        c.audit.postgres === undefined
          ? new AuditStore(join(c.dataDir, 'audit.db'), { sink: stdoutSink })
          : null,
    },
    {
      provide: AuditLog,
      inject: [SERVER_CONFIG, AuditStore],
      useFactory: async (c: ServerConfig, local: AuditStore | null): Promise<AuditLog> => {
        if (local !== null) return new SqliteAuditLog(local);
        const pg = c.audit.postgres;
        if (pg === undefined) throw new Error('neither PERISCOPE_DATABASE_URL nor the embedded audit store');
        const log = new Logger('audit');
        const store = await PostgresAuditStore.open(postgresUrl(pg), {
          sink: stdoutSink,
          onError: (err) => {
            log.error({ err: err.message }, 'audit database connection error (the next query reconnects)');
          },
        });
        log.log(
          { database: redactDatabaseUrl(pg.url), appliedMigrations: store.appliedMigrations },
          'audit store: PostgreSQL',
        );
        return store;
      },
    },
    AuditRetentionService,
    DeniedOpens,
  ],
  exports: [AuditStore, AuditLog, DeniedOpens, AuditRetentionService],
})
export class AuditModule implements OnApplicationShutdown {
  constructor(@Inject(AuditLog) private readonly store: AuditLog) {}

  /** Closes the store (the SQLite file, or the PostgreSQL pool). */
  async onApplicationShutdown(): Promise<void> {
    await this.store.close();
  }
}
