import { Global, Module } from '@nestjs/common';

import { SharedState } from './shared-state.service';

/** The state server replicas share (in memory, or Redis with PERISCOPE_REDIS_URL). */
@Global()
@Module({ providers: [SharedState], exports: [SharedState] })
export class SharedStateModule {}
