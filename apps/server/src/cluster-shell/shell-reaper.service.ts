import {
  Inject,
  Injectable,
  Optional,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';

import { ClusterRegistry } from '../clusters/cluster-registry.service';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { InMemoryLock, type SharedLock } from '../shared-state/ports';
import { SharedState } from '../shared-state/shared-state.service';
import { AgentLinks } from '../tunnel/agent-links';
import { ShellAdmission } from './shell-admission.service';
import { reapOnce } from './shell-reaper';

/** after an agent (re)connects: let its cluster shell capability settle, then look for leftovers */
const AGENT_READY_DELAY_MS = 5_000;

/** The lock of the reaper among replicas sharing their state. */
export const REAPER_LOCK = 'shell-reaper';

/**
 * Runs the reaper a minute after start (agents have reconnected by then), every 5 minutes, and for
 * one agent cluster shortly after its agent connects (an agent that restarted may have lost a
 * teardown). Live sessions (cap slots held, including those waiting for a resume) are never touched.
 *
 * Several replicas (state in Redis): each cluster is reaped by one replica. The holder of the
 * reaper lock reaps every cluster it reaches (direct clusters, its own agents); the others only
 * the agent clusters whose tunnel they hold (nobody else reaches those yet). The live set is every
 * replica's slots. In memory the lock is always held: every cluster, as before.
 */
@Injectable()
export class ShellReaperService implements OnApplicationBootstrap, OnApplicationShutdown {
  private timers: NodeJS.Timeout[] = [];
  private readonly pending = new Map<string, NodeJS.Timeout>();
  private stopped = false;
  private lock: SharedLock = new InMemoryLock(REAPER_LOCK);

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly registry: ClusterRegistry,
    private readonly agents: AgentLinks,
    private readonly admission: ShellAdmission,
    private readonly log: PinoLogger,
    @Optional() private readonly shared?: SharedState,
  ) {}

  /** Whether this replica reaps `cluster` now (see the class comment). */
  private reaps(cluster: string): boolean {
    return this.lock.isHeld() || this.agents.link(cluster)?.connected === true;
  }

  onApplicationBootstrap(): void {
    if (!this.config.clusterShell.enabled) return;
    // Taken after the shared state connected (module init), renewed while the server runs.
    if (this.shared) this.lock = this.shared.lock(REAPER_LOCK);
    const enabled = (): string[] =>
      this.registry
        .list()
        .filter((c) => c.clusterShellEnabled)
        .map((c) => c.name);
    // A timer callback catches and logs its own errors: an unhandled rejection here once ended
    // the process (an agent's hello of an older shape made the cluster list throw).
    const run = (only?: string): void => {
      reapOnce({
        clusters: () => enabled().filter((c) => (only === undefined || c === only) && this.reaps(c)),
        gateway: (c) => this.registry.gateway(c),
        liveSessions: () => this.admission.caps.ids(),
        namespace: this.config.clusterShell.namespace,
        graceMs: this.config.reaper.graceSeconds * 1000,
        log: this.log.logger,
      }).catch((err: unknown) => {
        this.log.error(
          { err: (err as Error).message, cluster: only },
          'reaper run failed; the next run tries again',
        );
      });
    };
    const intervalMs = this.config.reaper.intervalSeconds * 1000;
    this.timers = [setTimeout(run, Math.min(60_000, intervalMs)), setInterval(run, intervalMs)];
    for (const t of this.timers) t.unref();
    this.agents.onAgentReady((cluster) => {
      if (this.stopped || this.pending.has(cluster)) return; // one check per cluster at a time
      const t = setTimeout(() => {
        this.pending.delete(cluster);
        run(cluster);
      }, AGENT_READY_DELAY_MS);
      t.unref();
      this.pending.set(cluster, t);
    });
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    for (const t of [...this.timers, ...this.pending.values()]) clearTimeout(t);
    this.pending.clear();
  }
}
