import { Injectable, type BeforeApplicationShutdown } from '@nestjs/common';

import { ReadinessChecks } from './readiness-checks';

export type { ReadinessCheck } from './readiness-checks';

/** The server's readiness checks as a Nest provider: false as soon as application shutdown begins. */
@Injectable()
export class Readiness extends ReadinessChecks implements BeforeApplicationShutdown {
  beforeApplicationShutdown(): void {
    this.shutdown();
  }
}
