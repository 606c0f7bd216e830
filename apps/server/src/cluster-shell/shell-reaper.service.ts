import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';

import { ClusterRegistry } from '../clusters/cluster-registry.service';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { ShellAdmission } from './shell-admission.service';
import { reapOnce } from './shell-reaper';

const FIRST_RUN_MS = 60_000;
const INTERVAL_MS = 5 * 60_000;
const GRACE_MS = 10 * 60_000;

/** Runs the reaper a minute after start (agents have reconnected by then) and every 5 minutes. */
@Injectable()
export class ShellReaperService implements OnApplicationBootstrap, OnApplicationShutdown {
  private timers: NodeJS.Timeout[] = [];

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly registry: ClusterRegistry,
    private readonly admission: ShellAdmission,
    private readonly log: PinoLogger,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.config.clusterShell.enabled) return;
    const run = (): void => {
      void reapOnce({
        clusters: () =>
          this.registry
            .list()
            .filter((c) => c.clusterShellEnabled)
            .map((c) => c.name),
        gateway: (c) => this.registry.gateway(c),
        liveSessions: () => this.admission.caps.ids(),
        namespace: this.config.clusterShell.namespace,
        graceMs: GRACE_MS,
        log: this.log.logger,
      });
    };
    this.timers = [setTimeout(run, FIRST_RUN_MS), setInterval(run, INTERVAL_MS)];
    for (const t of this.timers) t.unref();
  }

  onApplicationShutdown(): void {
    for (const t of this.timers) clearTimeout(t);
  }
}
