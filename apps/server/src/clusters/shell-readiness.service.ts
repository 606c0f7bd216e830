import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { abortable } from '@periscope/cluster-ops';
import { PinoLogger } from 'nestjs-pino';

import type { ClusterEntry } from '../config/clusters-file';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { ClusterRegistry, type ClusterView } from './cluster-registry.service';
import {
  isDirectBackend,
  readinessFromAccess,
  readinessRefusal,
  recheckDue,
  type ShellReadiness,
} from './shell-readiness';

/** Deadline of one cluster's check (a rules review, a few access reviews, a dry-run create). */
export const READINESS_CHECK_DEADLINE_MS = 10_000;
/** A refused cluster asked about is checked again at most this often (besides the interval). */
export const READINESS_RECHECK_FLOOR_MS = 5_000;
/** How long a request waits for the re-checks it started (the rest show on the next look). */
export const READINESS_RECHECK_WAIT_MS = 3_000;
/** Clusters checked at once in a round or a re-check. */
const ROUND_CONCURRENCY = 2;

/**
 * Shell readiness of the direct clusters (in-cluster, kubeconfig, eks): whether the server's own
 * identity there holds what the shell provisioner needs (SelfSubjectRulesReview, then
 * SelfSubjectAccessReviews for what the rules do not show; see @periscope/cluster-ops
 * shell-access.ts). Checked at start, then every PERISCOPE_CLUSTER_SHELL_READINESS_SECONDS, and
 * again when someone asks about a refused cluster whose result is older than a few seconds, so
 * an RBAC install is picked up without a restart. One result per configured cluster (the map
 * never holds more); one check per cluster at a time; each with a deadline.
 *
 * Agent clusters are left to the agent: its chart installs its RBAC, its hello reports its shell.
 */
@Injectable()
export class ShellReadinessService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly results = new Map<string, ShellReadiness>();
  private readonly inflight = new Map<string, Promise<ShellReadiness>>();
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  private rechecking: Promise<void> | undefined;
  private stopped = false;

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly registry: ClusterRegistry,
    private readonly log: PinoLogger,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.config.clusterShell.enabled || this.direct().length === 0) return;
    const run = (): void => {
      if (this.stopped || this.round !== undefined) return; // a slow round is not stacked
      this.round = this.checkAll().finally(() => {
        this.round = undefined;
      });
    };
    run();
    this.timer = setInterval(run, this.config.clusterShell.readinessSeconds * 1000);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** The direct clusters that offer the shell by configuration (not turned off in the clusters file). */
  private direct(): ClusterEntry[] {
    return this.config.clusters.filter((e) => isDirectBackend(e.backend) && e.clusterShell.enabled !== false);
  }

  /** The namespace and the tiers shells are provisioned for on this cluster (its own tiers win). */
  private shellFor(e: ClusterEntry): { namespace: string; tiers: readonly string[] } {
    return {
      namespace: this.config.clusterShell.namespace,
      tiers: e.clusterShell.tiers ?? this.config.clusterShell.tiers,
    };
  }

  private async checkAll(): Promise<void> {
    const all = this.direct();
    for (let i = 0; i < all.length && !this.stopped; i += ROUND_CONCURRENCY)
      await Promise.all(all.slice(i, i + ROUND_CONCURRENCY).map((e) => this.check(e.name)));
  }

  /** Checks one cluster now (joins a check already running). Never rejects. */
  check(name: string): Promise<ShellReadiness> {
    const running = this.inflight.get(name);
    if (running) return running;
    const p = this.runCheck(name).finally(() => {
      this.inflight.delete(name);
    });
    this.inflight.set(name, p);
    return p;
  }

  private async runCheck(name: string): Promise<ShellReadiness> {
    const e = this.direct().find((c) => c.name === name);
    if (!e) return { state: 'unknown' };
    const before = this.results.get(name);
    const shell = this.shellFor(e);
    let next: ShellReadiness;
    try {
      const gw = this.registry.gateway(name);
      if (gw.checkShellAccess === undefined) return { state: 'unknown' };
      const signal = AbortSignal.timeout(READINESS_CHECK_DEADLINE_MS);
      // The signal ends the apiserver calls; abortable also ends the wait for what cannot take it
      // (an EKS gateway's first DescribeCluster and credentials).
      const access = await abortable(
        gw.checkShellAccess(shell, { signal }),
        signal,
        `checking the cluster-shell RBAC on ${name}`,
      );
      next = readinessFromAccess(e, shell, access, Date.now());
    } catch (err) {
      const error = (err as Error).message;
      // Unreachable is not "missing": what was known stays; an unchecked cluster stays offered.
      if (before === undefined || before.state === 'unknown')
        next = { state: 'unknown', checkedAt: Date.now(), error };
      else next = before;
      this.log.warn(
        { cluster: name, err: error },
        'could not check the cluster-shell RBAC on this cluster; the next check tries again',
      );
      this.results.set(name, next);
      return next;
    }
    this.results.set(name, next);
    const was = before?.state === 'missing' ? JSON.stringify([before.reason, before.tiers]) : before?.state;
    const now = next.state === 'missing' ? JSON.stringify([next.reason, next.tiers]) : next.state;
    if (was !== now) {
      if (next.state === 'missing')
        this.log.warn(
          { cluster: name, reason: next.reason, tiers: next.tiers },
          'the cluster shell is not offered on this cluster until its RBAC is installed',
        );
      else if (next.state === 'ready') this.log.info({ cluster: name }, 'the cluster shell RBAC is in place');
    }
    return next;
  }

  get(name: string): ShellReadiness | undefined {
    return this.results.get(name);
  }

  /** Why a person of `tier` may not open a shell on `cluster` for want of RBAC there; undefined if they may. */
  refusal(cluster: string, tier: string | undefined): string | undefined {
    return readinessRefusal(this.results.get(cluster), tier);
  }

  /**
   * Checks again the clusters (`names`, else all direct ones) that were refused longer than
   * READINESS_RECHECK_FLOOR_MS ago; all of them ROUND_CONCURRENCY at a time, in one run at a time
   * (a caller while one runs joins it). Waits at most `waitMs`; checks still running then finish
   * in the background and show on the next look. Never rejects.
   */
  async recheckRefused(names?: string[], waitMs = READINESS_RECHECK_WAIT_MS): Promise<void> {
    const now = Date.now();
    const isDue = (n: string): boolean => recheckDue(this.results.get(n), now, READINESS_RECHECK_FLOOR_MS);
    let wait: Promise<unknown> | undefined;
    if (names !== undefined) {
      // One cluster asked about (an open): its own check, joined if one runs.
      const due = names.filter(isDue).slice(0, ROUND_CONCURRENCY);
      if (due.length > 0) wait = Promise.all(due.map((n) => this.check(n)));
    } else {
      if (this.rechecking === undefined) {
        const due = this.direct()
          .map((e) => e.name)
          .filter(isDue);
        if (due.length > 0)
          this.rechecking = (async () => {
            for (let i = 0; i < due.length && !this.stopped; i += ROUND_CONCURRENCY)
              await Promise.all(due.slice(i, i + ROUND_CONCURRENCY).map((n) => this.check(n)));
          })().finally(() => {
            this.rechecking = undefined;
          });
      }
      wait = this.rechecking;
    }
    if (wait === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      wait,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, waitMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  }

  /** A cluster as /api/clusters shows it to a person of `tier`: not offered while its RBAC is missing. */
  applyTo(view: ClusterView, tier: string | undefined): ClusterView {
    if (!view.clusterShellEnabled) return view;
    const why = this.refusal(view.name, tier);
    if (why === undefined) return view;
    const { clusterShellMode: _mode, ...rest } = view;
    return { ...rest, clusterShellEnabled: false, clusterShellReason: why };
  }
}
