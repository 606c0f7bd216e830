/**
 * Several server replicas on this machine, as a highly available deployment runs them: a local
 * control plane whose node runs the shell image's real files, a real redis-server (the shared
 * state) and PostgreSQL (the audit store) from Debian's packages, N server replicas (the built
 * `apps/server/dist`, each its own child process on loopback ports), Debian's HAProxy in front of
 * them (round-robin, no stickiness, health check on /readyz) and, optionally, one agent whose tunnel
 * goes through HAProxy too. Used by `npm run start:ha` (e2e/ha/start-ha.ts) and the tests under
 * e2e/ha/.
 *
 * HAProxy has two frontends: the public port in HTTP mode (REST and WebSocket upgrades; `timeout
 * tunnel` keeps terminal sockets open) and the agent tunnel in TCP mode (the tunnel is mTLS,
 * terminated by the replica, so HAProxy passes the bytes through). Both backends check each
 * replica's /readyz on its ops port.
 *
 * Needs `npm run build` first (the server, agent and web UI from dist); the stack itself does not
 * build. Start-up takes 35-80 s on two cores (the latter beside other work) once the control-plane
 * binaries are cached.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createConnection } from 'node:net';
import { join, resolve } from 'node:path';

import { Redis } from 'ioredis';
import { stringify } from 'yaml';

import { shellNamespaceRbac } from '../cluster-ops/shell-rbac';
import { startTestCluster, type TestCluster } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { devLogin } from './dev-login';
import {
  assembleShellImage,
  DEV_USERS,
  grantReadTierView,
  writeDevAuthFile,
  type DevUser,
} from './local-stack';
import { spawnNode, terminate } from './node-process';
import { startPostgres, type PostgresServer } from './postgres-server';
import { startRedisServer, type TestRedis } from './redis-server';

const root = resolve(__dirname, '../..');

export const HAPROXY_BIN = process.env['PERISCOPE_HAPROXY_BIN'] ?? '/usr/sbin/haproxy';
/** The shell namespace of the stack's clusters (agent state and the agent CA Secrets live there too). */
export const HA_SHELL_NAMESPACE = 'periscope-system';
/** The agent CA Secret every replica shares (namespace/name). */
export const HA_AGENT_CA_SECRET = `${HA_SHELL_NAMESPACE}/periscope-agent-ca`;
export const HA_KEY_PREFIX = 'periscope:';
/** The kubeconfig-backed cluster (any replica reaches it) and the agent cluster. */
export const HA_DIRECT_CLUSTER = 'local';
export const HA_AGENT_CLUSTER = 'local-agent';
/** Lines kept per process for failure messages. */
const LOG_TAIL_LINES = 200;

export type HaUser = DevUser;

export const HA_DEFAULT_USERS: HaUser[] = DEV_USERS;

export interface HaStackOptions {
  /** Server replicas (default 3). */
  replicas?: number;
  /** Start the agent of `local-agent`, its tunnel through HAProxy (default true). */
  agent?: boolean;
  /** HAProxy's public port; 0 (default) picks a free one. */
  port?: number;
  /** HAProxy's agent tunnel port; 0 (default) picks a free one. */
  tunnelPort?: number;
  /** The agent's health port; 0 (default) picks a free one. */
  agentHealthPort?: number;
  /** Dev users (platform-admins: admin tier; developers: read tier). */
  users?: HaUser[];
  /** Extra environment of every replica (wins over the defaults). */
  env?: Record<string, string>;
  /** Extra environment of the agent. */
  agentEnv?: Record<string, string>;
  /** Progress lines. */
  log?: (line: string) => void;
  /** Output lines of the child processes (`replica-0`, `agent`, `haproxy`; default dropped, a tail is kept). */
  processLog?: (name: string, line: string) => void;
  /** A replica, the agent or HAProxy exited while the stack runs, not by killReplica/stop. */
  onUnexpectedExit?: (name: string, code: number | null) => void;
}

export interface HaReplica {
  index: number;
  /** `http://127.0.0.1:<port>`: this replica directly, past HAProxy. */
  url: string;
  /** `http://127.0.0.1:<port>`: its ops listener (/readyz, /metrics). */
  opsUrl: string;
  httpPort: number;
  tunnelPort: number;
  /** Its PERISCOPE_REPLICA_ID now (new at every start, like a pod's name). */
  id: () => string;
  alive: () => boolean;
  pid: () => number | undefined;
}

export interface HaStack {
  /** `http://localhost:<port>`: HAProxy's public port, the origin the replicas allow for WebSockets. */
  lbUrl: string;
  lbPort: number;
  /** `https://127.0.0.1:<port>`: HAProxy's agent tunnel frontend. */
  tunnelUrl: string;
  replicas: HaReplica[];
  /** `http://127.0.0.1:<port>` of each replica (the same as `replicas[i].url`). */
  replicaUrls: string[];
  users: HaUser[];
  /** `local` (kubeconfig, any replica reaches it) and, with the agent, `local-agent`. */
  clusters: string[];
  cluster: TestCluster;
  /** The audit database's URL (with its password: never print it). */
  databaseUrl: string;
  /** The Redis URL (with its password: never print it). */
  redisUrl: string;
  keyPrefix: string;
  /** A Redis connection of the harness (reads the shared state; closed by stop()). */
  redis: Redis;
  /** SIGKILL of replica i (a crash: no goodbye, its leases are left to expire). */
  killReplica: (i: number) => Promise<void>;
  /** Starts replica i again on its ports (SIGTERM first if it runs), under a new replica id. */
  restartReplica: (i: number) => Promise<void>;
  /** The replica id the Redis ownership record names for `cluster`'s agent tunnel, or undefined. */
  /** kill -9 of the agent (nothing else of it stops) */
  killAgent: () => Promise<void>;
  /** the agent again (from its state Secret), waiting for its tunnel (/readyz) */
  restartAgent: () => Promise<void>;
  tunnelOwnerId: (cluster: string) => Promise<string | undefined>;
  /** The index of the live replica whose record holds `cluster`'s tunnel, or undefined. */
  tunnelHolder: (cluster: string) => Promise<number | undefined>;
  /** Indexes of the live replicas whose `GET /api/agents` names themselves as holding `cluster`'s tunnel. */
  tunnelConnectedAt: (cluster: string) => Promise<number[]>;
  /** Session ids with a live cap slot in Redis (pool `cluster_shell` unless told). */
  liveCapSlots: (pool?: string) => Promise<string[]>;
  /** HAProxy's view of each replica in both backends (its health checks). */
  lbStates: () => Promise<LbServerState[]>;
  /** Whether the agent runs and answers /readyz (its tunnel is up). */
  agentReady: () => Promise<boolean>;
  /** Last output lines of a process (`replica-<i>`, `agent`, `haproxy`). */
  logTail: (name: string) => string;
  /** Process ids of everything the stack started and that still runs (replicas, agent, HAProxy). */
  pids: () => number[];
  /** The temp directories the stack created (removed by stop()). */
  dirs: string[];
  /** Stops the agent, HAProxy, the replicas, Redis, PostgreSQL, the control plane; removes temp dirs. */
  stop: () => Promise<void>;
}

/** Polls `check` every 200 ms until true; fails after `ms` with `what` and `detail()`. */
async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  ms: number,
  detail: () => string = () => '',
): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > end) {
      const d = detail();
      throw new Error(`timed out after ${ms} ms waiting for ${what}${d ? `\n${d}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

function running(c: ChildProcess | undefined): c is ChildProcess {
  return c !== undefined && c.exitCode === null && c.signalCode === null;
}

function haproxyConfig(opts: {
  statsSocket: string;
  lbPort: number;
  tunnelPort: number;
  replicas: { httpPort: number; opsPort: number; tunnelPort: number }[];
}): string {
  const server = (i: number, port: number, opsPort: number): string =>
    `  server replica-${i} 127.0.0.1:${port} check port ${opsPort}`;
  return [
    'global',
    '  maxconn 4096',
    // The harness reads the servers' states here (`show stat`).
    `  stats socket ${opts.statsSocket} mode 600 level user`,
    '',
    'defaults',
    '  timeout connect 2s',
    '  timeout client 60s',
    '  timeout server 60s',
    // Terminal sockets and the agent tunnel stay open for as long as they are used.
    '  timeout tunnel 1h',
    '  timeout client-fin 5s',
    '  timeout check 2s',
    // A refused connection (a replica just killed, before its check failed) goes to another one.
    '  retries 2',
    '  option redispatch',
    '  default-server inter 1s fall 2 rise 1',
    '',
    'frontend public',
    '  mode http',
    `  bind 127.0.0.1:${opts.lbPort}`,
    '  default_backend replicas',
    '',
    'backend replicas',
    '  mode http',
    '  balance roundrobin',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    ...opts.replicas.map((r, i) => server(i, r.httpPort, r.opsPort)),
    '',
    'frontend agent_tunnel',
    '  mode tcp',
    `  bind 127.0.0.1:${opts.tunnelPort}`,
    '  default_backend tunnels',
    '',
    'backend tunnels',
    '  mode tcp',
    '  balance roundrobin',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    ...opts.replicas.map((r, i) => server(i, r.tunnelPort, r.opsPort)),
    '',
  ].join('\n');
}

export async function startHaStack(opts: HaStackOptions = {}): Promise<HaStack> {
  const say = opts.log ?? ((): void => undefined);
  const n = opts.replicas ?? 3;
  const users = opts.users ?? HA_DEFAULT_USERS;
  const withAgent = opts.agent ?? true;
  for (const [what, file] of [
    ['the built server (npm run build)', join(root, 'apps/server/dist/main.js')],
    ['the built agent (npm run build)', join(root, 'apps/agent/dist/main.js')],
    ["HAProxy (Debian's haproxy package; scripts/setup.sh installs it)", HAPROXY_BIN],
  ] as const)
    if (!existsSync(file)) throw new Error(`${what} is missing: ${file}`);

  const lbPort = opts.port || (await freePort());
  const lbTunnelPort = opts.tunnelPort || (await freePort());
  const agentHealthPort = opts.agentHealthPort || (await freePort());
  const lbUrl = `http://localhost:${lbPort}`;
  const tunnelUrl = `https://127.0.0.1:${lbTunnelPort}`;

  const dirs: string[] = [];
  const work = mkdtempSync(join(tmpdir(), 'periscope-ha-'));
  dirs.push(work);

  const tails = new Map<string, string[]>();
  const keep = (name: string, line: string): void => {
    let t = tails.get(name);
    if (!t) tails.set(name, (t = []));
    t.push(line.slice(0, 1_000));
    if (t.length > LOG_TAIL_LINES) t.shift();
    opts.processLog?.(name, line);
  };
  const logTail = (name: string): string =>
    `--- last lines of ${name} ---\n${(tails.get(name) ?? ['(no output)']).join('\n')}`;

  // Everything started so far, stopped in reverse by stop() (also when start-up fails half way).
  let cluster: TestCluster | undefined;
  let redis: TestRedis | undefined;
  let pg: PostgresServer | undefined;
  let redisClient: Redis | undefined;
  let haproxy: ChildProcess | undefined;
  let agent: ChildProcess | undefined;
  const procs: (ChildProcess | undefined)[] = Array.from({ length: n }, () => undefined);
  const ids: string[] = Array.from({ length: n }, (_, i) => `replica-${i}`);
  const expectedExits = new WeakSet<ChildProcess>();
  let stopping: Promise<void> | undefined;
  // A harness process that dies without stop() takes its children with it.
  const killAll = (): void => {
    for (const c of [agent, haproxy, ...procs]) if (running(c)) c.kill('SIGKILL');
    // redis-server's harness has no exit hook of its own (PostgreSQL's and the cluster's do); its
    // kill() sends SIGKILL at once.
    void redis?.kill();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  };
  process.once('exit', killAll);

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // The agent first, then HAProxy, then the replicas (which end their sessions through the
      // still-running control plane, Redis and PostgreSQL), then the stores and the cluster.
      if (running(agent)) await terminate(agent, 15_000);
      if (running(haproxy)) await terminate(haproxy, 5_000);
      await Promise.all(procs.map((c) => (running(c) ? terminate(c, 15_000) : Promise.resolve())));
      await redisClient?.quit().catch(() => redisClient?.disconnect());
      await redis?.stop();
      await pg?.stop();
      await cluster?.stop();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
      process.off('exit', killAll);
    })();
    return stopping;
  };

  const watch = (name: string, child: ChildProcess): void => {
    child.on('exit', (code) => {
      if (stopping === undefined && !expectedExits.has(child)) {
        keep(name, `(exited: code ${code ?? 'null'}, signal ${child.signalCode ?? 'none'})`);
        opts.onUnexpectedExit?.(name, code);
      }
    });
  };

  try {
    say('starting the local Kubernetes control plane, Redis and PostgreSQL');
    const { shellImage, imageMap } = assembleShellImage(work);
    const redisPassword = randomBytes(18).toString('hex');
    const started = Date.now();
    // All three settle before a failure is thrown, so that stop() finds whatever did start.
    const deps = await Promise.allSettled([
      startTestCluster({ log: say, imageMap }).then((c) => (cluster = c)),
      startRedisServer({ password: redisPassword }).then((r) => (redis = r)),
      startPostgres({ startTimeoutMs: 90_000 }).then((p) => (pg = p)),
    ]);
    for (const d of deps) if (d.status === 'rejected') throw d.reason;
    if (!cluster || !redis || !pg) throw new Error('a dependency did not start');
    const c = cluster;
    say(`control plane, Redis and PostgreSQL up in ${Date.now() - started} ms`);
    const databaseUrl = await pg.createDatabase('periscope_ha');
    redisClient = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 2, connectTimeout: 5_000 });
    // One line per distinct problem into the tail (ioredis prints unhandled ones raw).
    let lastRedisError = '';
    redisClient.on('error', (err: Error) => {
      if (err.message === lastRedisError) return;
      lastRedisError = err.message;
      keep('harness', `Redis connection problem: ${err.message}`);
    });
    await redisClient.connect();

    await c.createNamespace(HA_SHELL_NAMESPACE);
    await c.apply(shellNamespaceRbac(HA_SHELL_NAMESPACE, ['admin'], { admin: 'cluster-admin' }));
    await grantReadTierView(c);
    const conf = join(work, 'config');
    mkdirSync(conf);
    writeDevAuthFile(join(conf, 'auth.yaml'), users);
    writeFileSync(
      join(conf, 'clusters.yaml'),
      stringify({
        clusters: [
          {
            name: HA_DIRECT_CLUSTER,
            backend: 'kubeconfig',
            kubeconfigPath: c.info.adminKubeconfig,
            environment: 'dev',
          },
          { name: HA_AGENT_CLUSTER, backend: 'agent', environment: 'dev' },
        ],
      }),
    );

    const ports = await Promise.all(
      Array.from({ length: n }, async () => ({
        httpPort: await freePort(),
        opsPort: await freePort(),
        tunnelPort: await freePort(),
      })),
    );
    const shared: NodeJS.ProcessEnv = {
      PERISCOPE_AUTH_MODE: 'dev',
      PERISCOPE_AUTH_FILE: join(conf, 'auth.yaml'),
      PERISCOPE_CLUSTERS_FILE: join(conf, 'clusters.yaml'),
      PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
      PERISCOPE_CLUSTER_SHELL_IMAGE: shellImage,
      PERISCOPE_LISTEN_ADDRESS: '127.0.0.1',
      PERISCOPE_PUBLIC_URL: lbUrl,
      PERISCOPE_AGENT_TUNNEL_URL: tunnelUrl,
      PERISCOPE_AGENT_CA_SECRET: HA_AGENT_CA_SECRET,
      PERISCOPE_REDIS_URL: redis.url,
      PERISCOPE_REDIS_KEY_PREFIX: HA_KEY_PREFIX,
      PERISCOPE_SESSION_KEY: randomBytes(32).toString('base64'),
      PERISCOPE_DATABASE_URL: databaseUrl,
      // replica-to-replica forwarding (apps/server/src/replicas): one secret for all
      PERISCOPE_REPLICA_SECRET: randomBytes(36).toString('base64url'),
      PERISCOPE_LOG_LEVEL: 'warn',
      // the agent CA Secret is read through the default kubeconfig
      KUBECONFIG: c.info.adminKubeconfig,
      ...opts.env,
    };

    const launch = async (i: number): Promise<void> => {
      const p = ports[i];
      if (!p) throw new Error(`no replica ${i}`);
      const name = `replica-${i}`;
      // A new id at every start, as a restarted pod gets a new name.
      ids[i] = `replica-${i}-${randomBytes(3).toString('hex')}`;
      const child = spawnNode(
        ['--enable-source-maps', join(root, 'apps/server/dist/main.js')],
        {
          ...shared,
          PERISCOPE_HTTP_PORT: String(p.httpPort),
          PERISCOPE_METRICS_PORT: String(p.opsPort),
          PERISCOPE_AGENT_TUNNEL_PORT: String(p.tunnelPort),
          PERISCOPE_DATA_DIR: join(work, `data-${i}`),
          PERISCOPE_REPLICA_ID: ids[i],
          PERISCOPE_REPLICA_URL: `http://127.0.0.1:${p.httpPort}`,
        },
        (line) => {
          keep(name, line);
        },
      );
      procs[i] = child;
      watch(name, child);
      await waitUntil(
        `${name} to answer /readyz on 127.0.0.1:${p.opsPort}`,
        async () => {
          if (!running(child)) throw new Error('exited');
          return httpOk(`http://127.0.0.1:${p.opsPort}/readyz`);
        },
        90_000,
        () => logTail(name),
      ).catch((err: unknown) => {
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(
            `${name} exited while starting (code ${child.exitCode ?? 'null'}, signal ${child.signalCode ?? 'none'})\n${logTail(name)}`,
          );
        throw err;
      });
    };

    // The first replica alone (it migrates the audit schema and creates the agent CA Secret),
    // then the others together.
    say(`starting ${n} server replicas`);
    await launch(0);
    await Promise.all(Array.from({ length: n - 1 }, (_, i) => launch(i + 1)));

    const cfg = join(work, 'haproxy.cfg');
    const statsSocket = join(work, 'haproxy.sock');
    writeFileSync(cfg, haproxyConfig({ statsSocket, lbPort, tunnelPort: lbTunnelPort, replicas: ports }));
    const check = spawnSyncQuiet(HAPROXY_BIN, ['-c', '-q', '-f', cfg]);
    if (check !== undefined) throw new Error(`HAProxy refused its generated config ${cfg}: ${check}`);
    say(`starting HAProxy on 127.0.0.1:${lbPort} (tunnel 127.0.0.1:${lbTunnelPort})`);
    const hp = spawn(HAPROXY_BIN, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    haproxy = hp;
    const split = (chunk: Buffer): void => {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') keep('haproxy', line);
    };
    hp.stdout.on('data', split);
    hp.stderr.on('data', split);
    hp.on('error', (err) => {
      keep('haproxy', `spawn error: ${err.message}`);
    });
    watch('haproxy', hp);
    // Every replica is up behind it once n requests in a row answer (round-robin, checks passed).
    let lastAnswer = 'no answer yet';
    await waitUntil(
      `HAProxy on ${lbUrl} to see all ${n} replicas up and answer`,
      async () => {
        if (!running(hp)) throw new Error('HAProxy exited');
        const states = await lbServerStates(statsSocket).catch((err: unknown) => {
          lastAnswer = `stats socket: ${(err as Error).message}`;
          return [];
        });
        if (states.length > 0) lastAnswer = JSON.stringify(states);
        if (states.length !== 2 * n || states.some((st) => st.status !== 'UP')) return false;
        return httpOk(`${lbUrl}/api/meta`);
      },
      30_000,
      () => `last answer: ${lastAnswer}\n${logTail('haproxy')}`,
    );

    /** Starts the agent: with a registration token the first time, from its state Secret after. */
    const launchAgent = async (token?: string): Promise<void> => {
      const a = spawnNode(
        ['--enable-source-maps', join(root, 'apps/agent/dist/main.js')],
        {
          PERISCOPE_SERVER_URL: tunnelUrl,
          PERISCOPE_REGISTRATION_URL: lbUrl,
          ...(token !== undefined ? { PERISCOPE_REGISTRATION_TOKEN: token } : {}),
          PERISCOPE_AGENT_NAMESPACE: HA_SHELL_NAMESPACE,
          PERISCOPE_CLUSTER_NAME: HA_AGENT_CLUSTER,
          PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
          PERISCOPE_AGENT_LISTEN_ADDRESS: '127.0.0.1',
          PERISCOPE_AGENT_HEALTH_PORT: String(agentHealthPort),
          PERISCOPE_LOG_LEVEL: 'warn',
          KUBECONFIG: c.info.adminKubeconfig,
          ...opts.agentEnv,
        },
        (line) => {
          keep('agent', line);
        },
      );
      agent = a;
      watch('agent', a);
      await waitUntil(
        'the agent to register and bring its tunnel up (/readyz)',
        async () => {
          if (!running(a)) throw new Error('the agent exited');
          return httpOk(`http://127.0.0.1:${agentHealthPort}/readyz`);
        },
        60_000,
        () => `${logTail('agent')}\n${logTail('haproxy')}`,
      );
    };

    if (withAgent) {
      say('registering and starting the agent of local-agent (its tunnel through HAProxy)');
      const admin = users.find((u) => u.groups.includes('platform-admins'))?.subject ?? 'admin';
      const cookie = await devLogin(lbUrl, admin);
      const minted = await fetch(`${lbUrl}/api/agents/tokens`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', cookie },
        body: JSON.stringify({ cluster: HA_AGENT_CLUSTER }),
      });
      if (minted.status !== 201)
        throw new Error(`minting the agent token failed: HTTP ${minted.status} ${await minted.text()}`);
      const { token } = (await minted.json()) as { token: string };
      await launchAgent(token);
    }

    const replicas: HaReplica[] = ports.map((p, i) => ({
      index: i,
      url: `http://127.0.0.1:${p.httpPort}`,
      opsUrl: `http://127.0.0.1:${p.opsPort}`,
      httpPort: p.httpPort,
      tunnelPort: p.tunnelPort,
      id: () => ids[i] ?? '',
      alive: () => running(procs[i]),
      pid: () => {
        const c = procs[i];
        return running(c) ? c.pid : undefined;
      },
    }));
    const rc = redisClient;
    const adminSubject = users.find((u) => u.groups.includes('platform-admins'))?.subject ?? 'admin';

    const killReplica = async (i: number): Promise<void> => {
      const child = procs[i];
      if (!running(child)) return;
      expectedExits.add(child);
      await new Promise<void>((done) => {
        child.once('exit', () => {
          done();
        });
        child.kill('SIGKILL');
      });
    };
    const killAgent = async (): Promise<void> => {
      const child = agent;
      if (!running(child)) return;
      expectedExits.add(child);
      await new Promise<void>((done) => {
        child.once('exit', () => {
          done();
        });
        child.kill('SIGKILL');
      });
    };
    const tunnelOwnerId = async (cluster: string): Promise<string | undefined> =>
      (await rc.get(`${HA_KEY_PREFIX}own:agent:${cluster}`)) ?? undefined;

    return {
      lbUrl,
      lbPort,
      tunnelUrl,
      replicas,
      replicaUrls: replicas.map((r) => r.url),
      users,
      clusters: withAgent ? [HA_DIRECT_CLUSTER, HA_AGENT_CLUSTER] : [HA_DIRECT_CLUSTER],
      cluster: c,
      databaseUrl,
      redisUrl: redis.url,
      keyPrefix: HA_KEY_PREFIX,
      redis: rc,
      killReplica,
      restartReplica: async (i) => {
        if (stopping !== undefined) throw new Error('the stack is stopping');
        const child = procs[i];
        if (running(child)) {
          expectedExits.add(child);
          await terminate(child, 15_000);
        }
        await launch(i);
      },
      killAgent,
      restartAgent: async () => {
        await killAgent();
        await launchAgent();
      },
      tunnelOwnerId,
      tunnelHolder: async (cluster) => {
        const owner = await tunnelOwnerId(cluster);
        const i = ids.findIndex((id, k) => id === owner && running(procs[k]));
        return i >= 0 ? i : undefined;
      },
      tunnelConnectedAt: async (cluster) => {
        const at: number[] = [];
        for (const r of replicas) {
          if (!r.alive()) continue;
          const cookie = await devLogin(r.url, adminSubject);
          const res = await fetch(`${r.url}/api/agents`, {
            headers: { cookie },
            signal: AbortSignal.timeout(5_000),
          });
          if (!res.ok) throw new Error(`GET ${r.url}/api/agents: HTTP ${res.status} ${await res.text()}`);
          const { agents } = (await res.json()) as {
            agents: { cluster: string; connected: boolean; replica: string | null }[];
          };
          // Every replica shows the agent connected (the shared view); the holder names itself.
          if (agents.some((a) => a.cluster === cluster && a.connected && a.replica === r.id()))
            at.push(r.index);
        }
        return at;
      },
      liveCapSlots: async (pool = 'cluster_shell') => {
        // The live entries of the pool's `all` set (expired ones linger until the next reserve).
        const [sec, micro] = await rc.time();
        const now = Number(sec) * 1000 + Math.floor(Number(micro) / 1000);
        return rc.zrangebyscore(`${HA_KEY_PREFIX}caps:{${pool}}:all`, `(${now}`, '+inf');
      },
      lbStates: () => lbServerStates(statsSocket),
      agentReady: () =>
        running(agent) ? httpOk(`http://127.0.0.1:${agentHealthPort}/readyz`) : Promise.resolve(false),
      logTail,
      pids: () =>
        [agent, haproxy, ...procs].flatMap((p) => (running(p) && p.pid !== undefined ? [p.pid] : [])),
      dirs,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface LbServerState {
  /** `replicas` (HTTP) or `tunnels` (agent tunnel, TCP) */
  backend: string;
  /** `replica-<i>` */
  server: string;
  /** UP, DOWN, MAINT, … (HAProxy's words) */
  status: string;
}

/** The servers of HAProxy's two backends and their health, read on its stats socket. */
export function lbServerStates(socket: string, timeoutMs = 3_000): Promise<LbServerState[]> {
  return new Promise((resolve, reject) => {
    const conn = createConnection(socket);
    let out = '';
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`no answer on ${socket} within ${timeoutMs} ms`));
    }, timeoutMs);
    conn.on('connect', () => conn.write('show stat\n'));
    conn.on('data', (d: Buffer) => {
      out = (out + d.toString()).slice(-200_000);
    });
    conn.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    conn.on('end', () => {
      clearTimeout(timer);
      const lines = out.split('\n').filter((l) => l.trim() !== '');
      const header = (lines[0] ?? '').replace(/^# /, '').split(',');
      const col = (name: string): number => header.indexOf(name);
      const [px, sv, st] = [col('pxname'), col('svname'), col('status')];
      resolve(
        lines
          .slice(1)
          .map((l) => l.split(','))
          .filter((f) => f[sv] !== 'FRONTEND' && f[sv] !== 'BACKEND')
          .map((f) => ({ backend: f[px] ?? '', server: f[sv] ?? '', status: f[st] ?? '' })),
      );
    });
  });
}

/** Runs a short command; undefined when it exits 0, else its output (bounded). */
function spawnSyncQuiet(cmd: string, args: string[]): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.status === 0) return undefined;
  return `${r.error?.message ?? `exit ${r.status}`}: ${`${r.stdout}\n${r.stderr}`.trim().slice(-2_000)}`;
}
