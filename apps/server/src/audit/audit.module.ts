import { join } from 'node:path';

import { Global, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';

import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { AuditRetentionService } from './audit-retention.service';
import { AuditStore, stdoutSink } from './audit-store';
import { AuditController } from './audit.controller';
import { DeniedOpens } from './denied-opens';

@Global()
@Module({
  controllers: [AuditController],
  providers: [
    {
      provide: AuditStore,
      inject: [SERVER_CONFIG],
      useFactory: (c: ServerConfig) => new AuditStore(join(c.dataDir, 'audit.db'), { sink: stdoutSink }),
    },
    AuditRetentionService,
    DeniedOpens,
  ],
  exports: [AuditStore, DeniedOpens, AuditRetentionService],
})
export class AuditModule implements OnApplicationShutdown {
  constructor(@Inject(AuditStore) private readonly store: AuditStore) {}

  onApplicationShutdown(): void {
    this.store.close();
  }
}
