import {
  Inject,
  Injectable,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import type { AgentHello } from '@periscope/protocol';
import { PinoLogger } from 'nestjs-pino';

import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { OutageLog, parseRecord } from '../shared-state/redis-record';
import { luaScript, PendingOps, type ScriptCall } from '../shared-state/redis-script';
import { RECORD_LEASE, SharedState } from '../shared-state/shared-state.service';
import type { AgentLink } from './agent-link';
import { AgentLinks } from './agent-links';

/** What is known of an agent's tunnel, as its holder publishes it and as every replica shows it. */
interface AgentLinkFields {
  connectedSince: string | null;
  lastSeen: string | null;
  lastRttMs: number | null;
  openStreams: number;
  certificateNotAfter: string | null;
  version: string | null;
  clusterShell: AgentHello['clusterShell'] | null;
}

/**
 * What the replica holding an agent's tunnel publishes of it (no secrets: no certificate, no
 * token, no address): what `GET /api/agents` and `GET /api/clusters` show of a connected agent.
 */
export interface SharedAgentView extends AgentLinkFields {
  replica: string;
}

/** The other replicas' records of one agent cluster: live (tunnel held there now) and last seen. */
export interface RemoteAgent {
  live?: SharedAgentView;
  seen?: SharedAgentView;
}

/** An agent cluster's status as every replica shows it: its own link merged with the others'. */
export interface AgentFacts extends AgentLinkFields {
  connected: boolean;
  /** the replica holding the tunnel now (null: none) */
  replica: string | null;
  /** why the last connection (to this replica) was refused at its handshake, until a good one */
  unavailable?: string;
  handshakeProblem?: { at: string; reason: string };
}

/** A live record outlives its last renewal by this (a replica that dies: its records expire). */
export const AGENT_VIEW_LEASE_MS = RECORD_LEASE.leaseMs;
/** How often the holder renews (and refreshes: last heartbeat, round trip) its records. */
export const AGENT_VIEW_EVERY_MS = 5_000;
/** The last-seen record of a cluster whose agent is gone (one per configured agent cluster). */
export const AGENT_SEEN_TTL_MS = 30 * 24 * 3600 * 1000;
/** A record longer than this is not read (a record is a few hundred bytes). */
const MAX_RECORD_CHARS = 16_384;

/** Deletes the live record when it is still `replica`'s (never another replica's newer one). */
const DELETE_IF_MINE = `local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local ok, d = pcall(cjson.decode, v)
if ok and type(d) == 'table' and d['replica'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** The record of a link as its holder publishes it. */
export function agentViewOf(link: AgentLink, replica: string): SharedAgentView {
  return {
    replica,
    connectedSince: link.connectedSince?.toISOString() ?? null,
    lastSeen: link.lastSeen?.toISOString() ?? null,
    lastRttMs: link.lastRttMs ?? null,
    openStreams: link.mux.size,
    certificateNotAfter: link.hello?.certNotAfter ?? null,
    version: link.hello?.version ?? null,
    clusterShell: link.hello?.clusterShell ?? null,
  };
}

const str = (v: unknown): string | null => (typeof v === 'string' && v.length <= 200 ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** A record read back from Redis, checked (undefined: absent, too long or not a record). */
export function parseAgentView(text: string | null | undefined): SharedAgentView | undefined {
  const r = parseRecord(text, MAX_RECORD_CHARS);
  if (r === undefined) return undefined;
  const replica = str(r['replica']);
  if (replica === null) return undefined;
  const cs = r['clusterShell'];
  return {
    replica,
    connectedSince: str(r['connectedSince']),
    lastSeen: str(r['lastSeen']),
    lastRttMs: num(r['lastRttMs']),
    openStreams: num(r['openStreams']) ?? 0,
    certificateNotAfter: str(r['certificateNotAfter']),
    version: str(r['version']),
    clusterShell: typeof cs === 'object' && cs !== null ? (cs as AgentHello['clusterShell']) : null,
  };
}

/** This replica's own facts of an agent cluster (undefined link: it never connected here). */
export function localFacts(link: AgentLink | undefined, replica: string): AgentFacts | undefined {
  if (link === undefined) return undefined;
  const v = agentViewOf(link, replica);
  const unavailable = link.unavailable;
  return {
    ...v,
    connected: link.connected,
    replica: link.connected ? replica : null,
    ...(unavailable ? { unavailable: unavailable.reason } : {}),
    ...(link.handshakeProblem
      ? {
          handshakeProblem: {
            at: link.handshakeProblem.at.toISOString(),
            reason: link.handshakeProblem.reason,
          },
        }
      : {}),
  };
}

const later = (a: string | null, b: string | null): string | null =>
  a === null ? b : b === null ? a : Date.parse(b) > Date.parse(a) ? b : a;

/**
 * One agent cluster's status from this replica's link and the other replicas' records (pure):
 * a tunnel held here wins; else another replica's live record (it holds the tunnel); else
 * disconnected, with the latest last-seen of either and this replica's handshake problem.
 * `remote` never holds this replica's own records (see AgentStatusShared.remote).
 */
export function mergeAgentFacts(
  local: AgentFacts | undefined,
  remote: RemoteAgent | undefined,
): AgentFacts | undefined {
  if (local?.connected === true) return local;
  const live = remote?.live;
  if (live !== undefined) return { ...live, connected: true };
  const seen = remote?.seen;
  if (local === undefined && seen === undefined) return undefined;
  // Disconnected: the freshest record says what the agent last was.
  const fresher =
    seen !== undefined && (local === undefined || later(local.lastSeen, seen.lastSeen) !== local.lastSeen)
      ? seen
      : local;
  return {
    connected: false,
    replica: null,
    connectedSince: null,
    lastSeen: later(local?.lastSeen ?? null, seen?.lastSeen ?? null),
    lastRttMs: fresher?.lastRttMs ?? null,
    // streams wait out their grace on the replica that held them
    openStreams: local?.openStreams ?? 0,
    certificateNotAfter: fresher?.certificateNotAfter ?? null,
    version: fresher?.version ?? null,
    clusterShell: fresher?.clusterShell ?? null,
    ...(local?.unavailable !== undefined ? { unavailable: local.unavailable } : {}),
    ...(local?.handshakeProblem !== undefined ? { handshakeProblem: local.handshakeProblem } : {}),
  };
}

/**
 * Several replicas (PERISCOPE_REDIS_URL): the replica holding an agent's tunnel publishes its
 * status, `<prefix>agentview:live:<cluster>` (a lease renewed every 5 s while connected, deleted
 * when the connection drops, expiring 30 s after a replica dies) and
 * `<prefix>agentview:seen:<cluster>` (the last one, kept 30 days: "last seen" on every replica);
 * every replica merges them into `GET /api/clusters` and `GET /api/agents`, so all answer the
 * same. One key of each per configured agent cluster. In memory (one replica): nothing is
 * published and the views are this replica's links, as before.
 */
@Injectable()
export class AgentStatusShared implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly agentClusters: string[];
  private readonly pending = new PendingOps();
  private timer: NodeJS.Timeout | undefined;
  private deleteIfMine: ScriptCall | undefined;
  private readonly writes: OutageLog;
  private readonly reads: OutageLog;
  private stopped = false;

  constructor(
    @Inject(SERVER_CONFIG) config: ServerConfig,
    private readonly links: AgentLinks,
    private readonly shared: SharedState,
    log: PinoLogger,
  ) {
    this.agentClusters = config.clusters.filter((c) => c.backend === 'agent').map((c) => c.name);
    this.writes = new OutageLog(log, {
      down: 'could not write the agent status to Redis; other replicas show these agents as disconnected until it is back (retrying every 5 s)',
      back: 'agent status records written to Redis again',
    });
    this.reads = new OutageLog(log, {
      down: "could not read the agent status from Redis; answering with this replica's own tunnels only (agents held by other replicas show as disconnected) until it is back",
      back: 'agent status records readable in Redis again',
    });
  }

  get replicaId(): string {
    return this.shared.replicaId;
  }

  private liveKey(prefix: string, cluster: string): string {
    return `${prefix}agentview:live:${cluster}`;
  }

  private seenKey(prefix: string, cluster: string): string {
    return `${prefix}agentview:seen:${cluster}`;
  }

  onApplicationBootstrap(): void {
    const store = this.shared.redisStore;
    if (store === undefined) return;
    this.deleteIfMine = luaScript(store.redis, 'periscopeAgentViewDelete', 1, DELETE_IF_MINE);
    this.links.onAgentReady((cluster) => {
      this.publish(cluster);
    });
    this.links.goneListeners.push((cluster) => {
      // A replaced connection drops after its successor is up: the record stays (renewed).
      if (this.links.link(cluster)?.connected === true) return;
      this.withdraw(cluster);
    });
    this.timer = setInterval(() => {
      for (const link of this.links.all()) if (link.connected) this.publish(link.cluster);
    }, AGENT_VIEW_EVERY_MS);
    this.timer.unref();
  }

  /**
   * A clean shutdown, before the tunnels close and Redis goes: the live records of the tunnels
   * held here are withdrawn now (the other replicas show them disconnected at once, not after the
   * lease), within 2 s.
   */
  async beforeApplicationShutdown(): Promise<void> {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
    for (const link of this.links.all()) if (link.connected) this.withdraw(link.cluster);
    this.stopped = true;
    await this.pending.drain(2_000);
  }

  /** Writes the live and last-seen records of a tunnel held here (fire and forget; logged). */
  private publish(cluster: string): void {
    const store = this.shared.redisStore;
    const link = this.links.link(cluster);
    if (store === undefined || this.timer === undefined || link?.connected !== true) return;
    const text = JSON.stringify(agentViewOf(link, store.replica));
    this.track(
      store.redis
        .multi()
        .set(this.liveKey(store.prefix, cluster), text, 'PX', AGENT_VIEW_LEASE_MS)
        .set(this.seenKey(store.prefix, cluster), text, 'PX', AGENT_SEEN_TTL_MS)
        .exec(),
    );
  }

  /** The connection dropped here: the live record goes (when still ours), last seen stays. */
  private withdraw(cluster: string): void {
    const store = this.shared.redisStore;
    const link = this.links.link(cluster);
    if (store === undefined || this.deleteIfMine === undefined || this.stopped) return;
    const key = this.liveKey(store.prefix, cluster);
    const seen = link
      ? JSON.stringify({ ...agentViewOf(link, store.replica), connectedSince: null })
      : undefined;
    this.track(
      (async () => {
        await this.deleteIfMine?.(key, store.replica);
        if (seen !== undefined)
          await store.redis.set(this.seenKey(store.prefix, cluster), seen, 'PX', AGENT_SEEN_TTL_MS);
      })(),
    );
  }

  private track(p: Promise<unknown>): void {
    void this.pending.track(p).then(
      () => {
        this.writes.ok();
      },
      (err: unknown) => {
        this.writes.failed(err);
      },
    );
  }

  /**
   * The other replicas' records of every agent cluster (none in memory, and none of this
   * replica's own). Redis unreachable: an empty map (this replica's own view), logged.
   */
  async remote(): Promise<ReadonlyMap<string, RemoteAgent>> {
    const out = new Map<string, RemoteAgent>();
    const store = this.shared.redisStore;
    if (store === undefined || this.agentClusters.length === 0) return out;
    const keys = this.agentClusters.flatMap((c) => [
      this.liveKey(store.prefix, c),
      this.seenKey(store.prefix, c),
    ]);
    let values: (string | null)[];
    try {
      values = await store.redis.mget(...keys);
      this.reads.ok();
    } catch (err) {
      this.reads.failed(err);
      return out;
    }
    this.agentClusters.forEach((cluster, i) => {
      const live = parseAgentView(values[2 * i]);
      const seen = parseAgentView(values[2 * i + 1]);
      const r: RemoteAgent = {
        ...(live !== undefined && live.replica !== store.replica ? { live } : {}),
        ...(seen !== undefined ? { seen } : {}),
      };
      if (r.live !== undefined || r.seen !== undefined) out.set(cluster, r);
    });
    return out;
  }

  /** One agent cluster's merged facts (undefined: it never connected to any replica). */
  facts(cluster: string, remote: ReadonlyMap<string, RemoteAgent>): AgentFacts | undefined {
    const facts = mergeAgentFacts(localFacts(this.links.link(cluster), this.replicaId), remote.get(cluster));
    // One replica (no Redis): there is no other to tell apart, so no replica is named.
    return facts && !this.shared.redisStore ? { ...facts, replica: null } : facts;
  }
}
