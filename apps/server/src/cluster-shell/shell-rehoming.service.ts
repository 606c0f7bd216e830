import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { CHANNEL, SESSION_KIND, type StreamResumeState } from '@periscope/protocol';
import { shellObjectName } from '@periscope/cluster-ops';
import { PinoLogger } from 'nestjs-pino';

import { AuditLog } from '../audit/audit-log';
import { ClusterRegistry } from '../clusters/cluster-registry.service';
import { SERVER_CONFIG } from '../config/config.module';
import { effectiveShellSettings } from '../config/effective-shell-settings';
import type { ServerConfig } from '../config/server-config';
import { RedisCapSlots } from '../shared-state/redis-cap-slots';
import { RECORD_LEASE, SharedState } from '../shared-state/shared-state.service';
import { RehomeStore, takeOverPlan, type RehomeKind, type RehomeRecord } from '../terminal/rehome-store';
import type { SessionTap } from '../terminal/session-tap';
import { TerminalSession } from '../terminal/terminal-session';
import { TerminalSessions } from '../terminal/terminal-sessions.service';
import { TerminalSocketService } from '../terminal/terminal-socket.service';
import { AgentGateway, isTunnelExec } from '../tunnel/agent-gateway';
import type { AgentLink } from '../tunnel/agent-link';
import { AgentLinks } from '../tunnel/agent-links';
import { ShellAdmission } from './shell-admission.service';
import { ShellDriver } from './shell-driver';
import { shellSessionLimits } from './shell-socket-route';

/** The audit verb of a session moved to another replica (one per move). */
export const REHOMED_VERB = 'session_rehomed';

/** At most this many take-overs run at once per replica (an agent brings at most 256 streams). */
const MAX_TAKEOVERS = 256;

/**
 * Re-homing of terminal sessions (several replicas, Redis): a live cluster shell or pod exec on an
 * agent's tunnel outlives the replica holding that tunnel (each kind registers how it is rebuilt:
 * `TerminalSessions.rehomeKinds`; the cluster shell here, pod exec in its socket route). While it runs, its owner keeps a record in Redis
 * (RehomeStore); when the replica dies, the agent reconnects to another one with the session's
 * exec stream still open (kept as an orphan, its recent output kept too) and that replica takes
 * the session over: compare-and-set of its ownership (epoch + 1), its cap slot adopted, a
 * TerminalSession detached and waiting for the browser's resume, the stream's output restarted
 * from the oldest byte the agent kept so the browser's offset is served exactly. A replica that
 * is alive but lost the session (the agent moved away) lets go when its ownership renewal fails.
 * Design and limits: docs/architecture.md, "Re-homing a session".
 */
@Injectable()
export class ShellRehoming implements OnApplicationBootstrap, OnApplicationShutdown {
  private store: RehomeStore | undefined;
  /** sessions being taken over here (a resume meanwhile is asked to retry); bounded by MAX_TAKEOVERS */
  private readonly moving = new Set<string>();

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly shared: SharedState,
    private readonly links: AgentLinks,
    private readonly sessions: TerminalSessions,
    private readonly sockets: TerminalSocketService,
    private readonly registry: ClusterRegistry,
    private readonly admission: ShellAdmission,
    private readonly audit: AuditLog,
    private readonly log: PinoLogger,
  ) {}

  onApplicationBootstrap(): void {
    const redis = this.shared.redisStore;
    if (redis === undefined) return; // one replica: nothing to move to
    const store = new RehomeStore(redis.redis, redis.prefix, redis.replica, RECORD_LEASE.leaseMs);
    this.store = store;
    this.links.orphanHandler = (link, orphans) => {
      this.takeOverAll(link, orphans);
    };
    this.sockets.holdResumesWhile((id) => this.moving.has(id));
    this.sessions.lostGuard = (id) => store.fence(id);
    this.sessions.rehomeKinds.set(SESSION_KIND.clusterShell, {
      pool: 'cluster_shell',
      caps: () => this.admission.caps,
      build: (r, release) => this.buildShell(r, release),
    });
    this.sessions.onAdded((s) => {
      this.track(s);
    });
    this.shared.sessions.onLost?.((id) => {
      void this.lost(id);
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await this.store?.drain(2_000);
  }

  /** A session of this replica: its record once its exec runs on an agent's tunnel. */
  private track(s: TerminalSession): void {
    const store = this.store;
    const kind = this.sessions.rehomeKinds.get(s.info.kind);
    if (!store || !kind) return;
    s.onExec((exec) => {
      if (!isTunnelExec(exec)) return; // a direct cluster: no tunnel to move with
      const { info } = s;
      store
        .write(
          {
            sessionId: info.sessionId,
            kind: info.kind,
            cluster: info.cluster,
            streamId: exec.tunnelStreamId,
            subject: info.subject,
            tier: info.tier,
            ...(info.mode !== undefined ? { mode: info.mode } : {}),
            ...(info.loginId !== undefined ? { loginId: info.loginId } : {}),
            startedAt: info.startedAt.getTime(),
            maxEndsAt: s.maxEndsAtMs,
            capPool: kind.pool,
            pod: info.kind === SESSION_KIND.clusterShell ? shellObjectName(info.sessionId) : (info.pod ?? ''),
            recording: this.recorded(info.cluster, info.kind),
            ...(info.rehome !== undefined ? { detail: info.rehome } : {}),
          },
          this.config.resume.graceSeconds * 1000,
        )
        .catch((err: unknown) => {
          this.log.warn(
            { sessionId: info.sessionId, err: (err as Error).message },
            'could not record the session for re-homing; it ends with its replica',
          );
        });
    });
    s.onEnded((reason) => {
      if (reason === 'rehomed') return; // another replica holds the record now
      store.drop(s.id).catch(() => undefined); // else it expires after the maximum length
    });
  }

  /**
   * A renewal found this replica's ownership of a session gone: when another replica holds it
   * now (it took the session over), this one lets go; otherwise the sweep claims it again.
   */
  private async lost(id: string): Promise<void> {
    const s = this.sessions.get(id);
    if (!s) return;
    try {
      const owner = await this.shared.sessions.ownerOf(id);
      if (owner === undefined || owner === this.shared.replicaId) return;
      s.abandon(`taken over by replica ${owner}`);
    } catch (err) {
      this.log.warn({ sessionId: id, err: (err as Error).message }, 'could not check who owns a session');
    }
  }

  /** The agent's tunnel came here with streams this replica does not know. */
  private takeOverAll(link: AgentLink, orphans: StreamResumeState[]): void {
    for (const o of orphans) {
      if (this.moving.size >= MAX_TAKEOVERS) {
        link.mux.rejectStream(o.streamId, 'too many sessions moving to this replica at once');
        continue;
      }
      void this.takeOver(link, o);
    }
  }

  /** One orphaned stream: adopt its session, or reset the stream. Never rejects. */
  private async takeOver(link: AgentLink, o: StreamResumeState): Promise<void> {
    const store = this.store;
    const me = this.shared.replicaId;
    const refuse = (reason: string): void => {
      this.log.warn(
        { sessionId: o.sessionId, streamId: o.streamId, reason },
        'a stream of a lost replica was not taken over; its session ends with that replica',
      );
      link.mux.rejectStream(o.streamId, reason.slice(0, 400));
    };
    if (!store || this.sessions.get(o.sessionId)) {
      refuse('this replica already holds the session');
      return;
    }
    this.moving.add(o.sessionId);
    try {
      const record = await store.read(o.sessionId);
      const kind = record && this.sessions.rehomeKinds.get(record.kind);
      if (!record || !kind) {
        refuse(record ? `sessions of kind ${record.kind} are not re-homed` : 'no re-homing record');
        return;
      }
      const plan = takeOverPlan(o, record, link.cluster, this.config.resume.bufferBytes);
      if (!plan.ok) {
        refuse(plan.reason);
        return;
      }
      const claim = await store.adopt(o.sessionId, o.streamId, record.epoch);
      if (!claim.ok) {
        refuse(claim.reason);
        return;
      }
      // The ownership record is ours (the script set it); renewed from now on by this replica.
      await this.shared.sessions.claim(o.sessionId, { takeOver: true });
      const release = await this.adoptSlot(kind, claim.record);
      const s = kind.build(claim.record, release);
      s.addTap(rehomeNote(claim.from, claim.record.recording === true));
      this.sessions.add(s, { adopted: true });
      s.onEnded((reason) => {
        if (reason !== 'rehomed') store.drop(s.id).catch(() => undefined);
      });
      this.moving.delete(o.sessionId);
      this.log.info(
        {
          sessionId: o.sessionId,
          cluster: link.cluster,
          from: claim.from,
          epoch: claim.epoch,
          outFrom: plan.outFrom,
          outTo: plan.outTo,
        },
        'session taken over from a lost replica; waiting for its browser to resume',
      );
      this.audit
        .write({
          verb: REHOMED_VERB,
          actor: claim.record.subject,
          cluster: claim.record.cluster,
          sessionId: o.sessionId,
          body: {
            session_id: o.sessionId,
            kind: claim.record.kind,
            from_replica: claim.from,
            to_replica: me,
            epoch: claim.epoch,
            output_from: plan.outFrom,
            output_to: plan.outTo,
          },
        })
        .catch((err: unknown) => {
          this.log.error({ sessionId: o.sessionId, err: (err as Error).message }, 'could not audit the move');
        });
      const gateway = new AgentGateway(() => link, link.cluster);
      try {
        await s.adopt({
          outFrom: plan.outFrom,
          outTo: plan.outTo,
          stdinBytes: o.rx[CHANNEL.stdin] ?? 0,
          startedAt: claim.record.startedAt,
          maxEndsAt: claim.record.maxEndsAt,
          attach: (handlers) => gateway.adoptExec(o, plan.outFrom, handlers),
        });
      } catch (err) {
        this.log.warn(
          { sessionId: o.sessionId, err: (err as Error).message },
          'the agent did not hand the stream over; ending the session',
        );
        await s.end('rehome_failed', null);
      }
    } catch (err) {
      refuse(`taking the session over failed: ${(err as Error).message}`);
    } finally {
      this.moving.delete(o.sessionId);
    }
  }

  /**
   * Whether sessions of this kind on this cluster are recorded (as recordingModeFor in
   * recording.service.ts decides; not imported: the recording folder imports this one).
   */
  private recorded(cluster: string, kind: string): boolean {
    const entry = this.config.clusters.find((c) => c.name === cluster);
    const own = kind === SESSION_KIND.clusterShell ? entry?.clusterShell.recording : entry?.exec.recording;
    return (own ?? this.config.recording.mode) !== 'off';
  }

  /** The session's cap slot, renewed and later freed by this replica. */
  private async adoptSlot(kind: RehomeKind, r: RehomeRecord): Promise<() => void> {
    const caps = kind.caps();
    if (!(caps instanceof RedisCapSlots)) return () => undefined;
    try {
      return await caps.adopt({ sessionId: r.sessionId, subject: r.subject, cluster: r.cluster });
    } catch (err) {
      // Its lease ended before the agent came back: the session goes on, outside the caps.
      this.log.warn(
        { sessionId: r.sessionId, err: (err as Error).message },
        'the moved session had lost its cap slot; it goes on without one',
      );
      return () => undefined;
    }
  }

  private buildShell(r: RehomeRecord, release: () => void): TerminalSession {
    const c = this.config;
    const shell = effectiveShellSettings(c.clusterShell, this.registry.entry(r.cluster));
    const tier = r.tier ?? '';
    return new TerminalSession(
      {
        sessionId: r.sessionId,
        kind: SESSION_KIND.clusterShell,
        subject: r.subject,
        tier: r.tier,
        cluster: r.cluster,
        ...(r.mode !== undefined ? { mode: r.mode } : {}),
        startedAt: new Date(r.startedAt),
        ...(r.loginId !== undefined ? { loginId: r.loginId } : {}),
      },
      new ShellDriver(
        {
          sessionId: r.sessionId,
          subject: r.subject,
          tier,
          cluster: r.cluster,
          mode: r.mode ?? '',
          release,
        },
        this.registry.gateway(r.cluster),
        shell,
        this.audit,
        this.log.logger,
      ),
      shellSessionLimits(c, shell.idleSeconds),
      this.log.logger,
    );
  }
}

/** The close record of a moved session says so (and that its recording stopped at the move). */
function rehomeNote(from: string, recorded: boolean): SessionTap {
  return {
    ready: true,
    output: () => undefined,
    input: () => undefined,
    resize: () => undefined,
    close: () =>
      Promise.resolve({
        rehomed_from: from,
        ...(recorded ? { recording_interrupted: 'rehomed' } : {}),
      }),
  };
}
