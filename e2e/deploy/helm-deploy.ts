/**
 * Shared set-up of the in-cluster deployment checks (helm-install.int.spec.ts: one server
 * replica; helm-replicas.int.spec.ts: two): both Helm charts installed with helm onto local
 * control planes whose node runs the server, agent and shell pods from the OCI image archives of
 * `npm run images` (this checkout's build; --strict-images: no pod runs host programs).
 *
 * Topology (loopback only, the one network the process-backed node has):
 * - hub: a control plane running the `periscope` chart (release `periscope`, namespace
 *   `periscope`): clusters `edge` (agent) and `hub` (in-cluster), OpenID sign-in against a real
 *   provider in this process, agent CA in a Secret through the server's in-cluster identity;
 * - edge: a second control plane running the `periscope-agent` chart (namespace
 *   `periscope-agent`), registered with a token minted through the server's API, dialling the
 *   server's tunnel, acting on its cluster with its in-cluster ServiceAccount.
 *
 * Every pod has a loopback address of its own (127.1.x.y, e2e/k8s/node/podaddr.go) where its
 * processes listen: the server on the chart's fixed HTTP port 8080, the ports that are values
 * (ops, tunnel, agent health) are free ports. Services are installed but not routable (no
 * kube-proxy): the test dials pods at their pod IPs, and two {@link LoopbackService}s on
 * 127.0.0.1 stand in for the UI and tunnel Services (the public URL, the agent's server URL).
 * See docs/helm-charts.md.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { parse } from 'yaml';
import { expect } from 'vitest';

import { ensureBinaries } from '../k8s/binaries';
import { startTestCluster, type TestCluster } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { readShellImageLayout, REPO_ROOT } from '../shell/image-layout';
import { sessionCookie, startIdp, type Idp } from '../support/oidc-idp';
import { TerminalClient } from '../support/terminal-client';
import { until } from '../support/wait';
import { buildImages, type BuiltImage, type ImageName } from '../images/build';

export const SERVER_NS = 'periscope';
export const AGENT_NS = 'periscope-agent';
export const SHELL_NS = 'periscope-system';
export const OPERATOR = 'ada';
/** The chart's fixed HTTP port (its probes and PERISCOPE_REPLICA_URL use it too). */
export const SERVER_HTTP_PORT = 8080;
export const SERVER_SELECTOR = 'app.kubernetes.io/name=periscope,app.kubernetes.io/instance=periscope';
export const AGENT_SELECTOR =
  'app.kubernetes.io/name=periscope-agent,app.kubernetes.io/instance=periscope-agent';

export const deployLog = (line: string): void => {
  process.stderr.write(`[deploy] ${line}\n`);
};

interface ChartMeta {
  appVersion: string;
  repository: string;
}

function chartImage(chart: string, key: (values: Record<string, unknown>) => unknown): ChartMeta {
  const meta = parse(readFileSync(join(REPO_ROOT, 'charts', chart, 'Chart.yaml'), 'utf8')) as {
    appVersion: unknown;
  };
  const values = parse(readFileSync(join(REPO_ROOT, 'charts', chart, 'values.yaml'), 'utf8')) as Record<
    string,
    unknown
  >;
  return { appVersion: String(meta.appVersion), repository: String(key(values)) };
}

export const SERVER_IMAGE = chartImage('periscope', (v) => (v['image'] as { repository: string }).repository);
export const AGENT_IMAGE = chartImage(
  'periscope-agent',
  (v) => (v['image'] as { repository: string }).repository,
);
export const SHELL_IMAGE = chartImage(
  'periscope',
  (v) => (v['clusterShell'] as { image: { repository: string } }).image.repository,
);

function run(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code =
        err === null
          ? 0
          : typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * The local plane runs without the apiserver's endpoint reconciler, so the charts have no
 * default/kubernetes addresses to look up for the shell egress policy; its pods are processes on
 * loopback (and no CNI enforces the policy here).
 */
export const LOCAL_EGRESS = { apiserver: { cidrs: ['127.0.0.1/32'] } };

export interface PodAddress {
  name: string;
  ip: string;
  ready: boolean;
}

/** The pods of a label selector with their pod IPs and Ready condition. */
export async function podAddresses(
  cluster: TestCluster,
  ns: string,
  selector: string,
): Promise<PodAddress[]> {
  const list = JSON.parse(
    await cluster.kubectlOk(['-n', ns, 'get', 'pods', '-l', selector, '-o', 'json']),
  ) as {
    items: {
      metadata: { name: string; deletionTimestamp?: string };
      status: { podIP?: string; conditions?: { type: string; status: string }[] };
    }[];
  };
  return list.items
    .filter((p) => p.metadata.deletionTimestamp === undefined)
    .map((p) => ({
      name: p.metadata.name,
      ip: p.status.podIP ?? '',
      ready: (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
    }));
}

/**
 * A stand-in for a Service on the local node (which has no kube-proxy): a TCP listener on
 * 127.0.0.1 that sends each connection to one Ready pod of `selector` (round robin) at its pod IP
 * and `targetPort`, looked up in the API (at most once a second). A connection that arrives while
 * no pod is Ready waits for one (up to `waitMs`), as a client of a Service whose endpoints are
 * not there yet would time out rather than be refused. Bounded: at most `maxConnections` open.
 */
export class LoopbackService {
  private server: Server | undefined;
  private readonly open = new Set<Socket>();
  private cache: { at: number; ips: string[] } | undefined;
  private turn = 0;
  /** Connections per pod IP, for tests that want to know where traffic went. */
  readonly sent = new Map<string, number>();

  constructor(
    private readonly cluster: TestCluster,
    private readonly ns: string,
    private readonly selector: string,
    private readonly targetPort: number,
    private readonly waitMs = 60_000,
    private readonly maxConnections = 256,
  ) {}

  get port(): number {
    const a = this.server?.address();
    if (a === null || a === undefined || typeof a === 'string')
      throw new Error('the stand-in Service is not listening');
    return a.port;
  }

  async start(port: number): Promise<void> {
    const server = createServer((client) => {
      void this.onClient(client);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => {
        reject(
          new Error(
            `the stand-in Service could not listen on 127.0.0.1:${port} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
          ),
        );
      });
      server.listen(port, '127.0.0.1', () => {
        resolve();
      });
    });
  }

  private async endpoints(): Promise<string[]> {
    if (this.cache !== undefined && Date.now() - this.cache.at < 1000) return this.cache.ips;
    const pods = await podAddresses(this.cluster, this.ns, this.selector).catch(() => []);
    const ips = pods.filter((p) => p.ready && p.ip !== '').map((p) => p.ip);
    this.cache = { at: Date.now(), ips };
    return ips;
  }

  private async onClient(client: Socket): Promise<void> {
    if (this.open.size >= this.maxConnections) {
      client.destroy();
      return;
    }
    this.open.add(client);
    client.pause();
    client.on('error', () => undefined);
    client.once('close', () => this.open.delete(client));
    const end = Date.now() + this.waitMs;
    let ips = await this.endpoints();
    while (ips.length === 0 && Date.now() < end && !client.destroyed) {
      await new Promise((r) => setTimeout(r, 250));
      this.cache = undefined;
      ips = await this.endpoints();
    }
    if (ips.length === 0 || client.destroyed) {
      client.destroy();
      return;
    }
    const ip = ips[this.turn++ % ips.length]!;
    this.sent.set(ip, (this.sent.get(ip) ?? 0) + 1);
    const upstream = connect({ host: ip, port: this.targetPort });
    this.open.add(upstream);
    upstream.once('close', () => this.open.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    upstream.once('connect', () => {
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  }

  async stop(): Promise<void> {
    for (const s of this.open) s.destroy();
    this.open.clear();
    await new Promise<void>((resolve) => {
      if (this.server === undefined) resolve();
      else
        this.server.close(() => {
          resolve();
        });
    });
  }
}

export interface DeployOptions {
  /** Extra values of the `periscope` chart (merged over the ones every check uses). */
  serverValues?: Record<string, unknown>;
  /** Runs after the server namespace exists, before the server chart is installed (HA Secrets). */
  beforeServer?: (hub: TestCluster) => Promise<void>;
  /** How many server pods `helm install --wait` must leave Ready (replicaCount). */
  serverReplicas?: number;
}

/** Both charts installed and Ready, with what the checks need to reach and inspect them. */
export class HelmDeployment {
  readonly work = mkdtempSync(join(tmpdir(), 'periscope-deploy-'));
  private readonly bins = ensureBinaries({ quiet: true });
  private readonly helmHome = join(this.work, 'helm-home');
  hub: TestCluster | undefined;
  edge: TestCluster | undefined;
  oidc: Idp | undefined;
  /** The UI Service stand-in: the chart's `publicURL`. */
  publicURL = '';
  tunnelPort = 0;
  healthPort = 0;
  metricsPort = 0;
  cookie = '';
  readonly built = new Map<ImageName, BuiltImage>();
  readonly installed: { cluster: TestCluster; release: string; ns: string }[] = [];
  web: LoopbackService | undefined;
  tunnel: LoopbackService | undefined;

  /** Base URL of a server pod (its pod IP, the chart's HTTP port). */
  static serverURL(ip: string): string {
    return `http://${ip}:${SERVER_HTTP_PORT}`;
  }

  async helm(cluster: TestCluster, args: string[], timeoutMs = 420_000): Promise<string> {
    const r = await run(
      this.bins.helm,
      ['--kubeconfig', cluster.info.adminKubeconfig, ...args],
      {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        HOME: this.helmHome,
        HELM_CACHE_HOME: join(this.helmHome, 'cache'),
        HELM_CONFIG_HOME: join(this.helmHome, 'config'),
        HELM_DATA_HOME: join(this.helmHome, 'data'),
      },
      timeoutMs,
    );
    if (r.code !== 0) throw new Error(`helm ${args.join(' ')} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
    return r.stdout;
  }

  private async install(
    cluster: TestCluster,
    release: string,
    chart: string,
    ns: string,
    values: unknown,
  ): Promise<void> {
    const file = join(this.work, `${release}-values.json`);
    writeFileSync(file, JSON.stringify(values, null, 2));
    const started = Date.now();
    // --wait: the Deployment's ReplicaSet has its pods Ready (the node's workload controllers;
    // Ready = the chart's startup and readiness probes pass) and the Services have cluster IPs.
    await this.helm(cluster, [
      'install',
      release,
      join(REPO_ROOT, 'charts', chart),
      '--namespace',
      ns,
      '--values',
      file,
      '--wait',
      '--timeout',
      '6m',
    ]);
    this.installed.push({ cluster, release, ns });
    deployLog(`helm install ${release}: ${Date.now() - started} ms`);
  }

  /** Pod, node and container logs of a namespace, for failure messages. */
  async diagnose(cluster: TestCluster | undefined, ns: string): Promise<string> {
    if (cluster === undefined) return '';
    const pods = await cluster.kubectl(['-n', ns, 'get', 'pods,rs,deploy', '-o', 'wide']);
    const logs = await cluster.kubectl([
      '-n',
      ns,
      'logs',
      '-l',
      'app.kubernetes.io/instance',
      '--tail',
      '40',
      '--all-containers',
      '--prefix',
    ]);
    return `${pods.stdout}${pods.stderr}\n--- logs ---\n${logs.stdout}${logs.stderr}\n--- node ---\n${cluster.logTail('node', 40)}`;
  }

  /** helm --wait returned: the pod's readiness probe passed, so /readyz answers 200 now. */
  async readyNow(url: string, why: () => Promise<string>): Promise<void> {
    const status = await fetch(url).then(
      (r) => r.status,
      (err: unknown) => String(err),
    );
    if (status !== 200) throw new Error(`${url} answered ${status} after helm --wait\n${await why()}`);
  }

  async serverPods(): Promise<PodAddress[]> {
    return podAddresses(this.hub!, SERVER_NS, SERVER_SELECTOR);
  }

  async agentPod(): Promise<PodAddress> {
    const [pod] = await podAddresses(this.edge!, AGENT_NS, AGENT_SELECTOR);
    if (pod === undefined)
      throw new Error(`no agent pod in ${AGENT_NS}\n${await this.diagnose(this.edge, AGENT_NS)}`);
    return pod;
  }

  /** Images, both planes, the server chart, sign-in, the agent chart: every pod Ready. */
  async deploy(opts: DeployOptions = {}): Promise<void> {
    const started = Date.now();
    // ---- images: the OCI archives of `npm run images` (e2e/images/build.ts), built once per set
    // of inputs and cached under ~/.cache/periscope-images. The nodes run every pod from them;
    // any other image fails to pull (--strict-images), so nothing runs host programs. ----
    const layout = readShellImageLayout();
    expect(SHELL_IMAGE.repository).toBe(layout.image);
    for (const image of await buildImages({ log: deployLog })) this.built.set(image.name, image);
    const archive = (name: ImageName): string => this.built.get(name)!.archive;
    deployLog(`images ready after ${Date.now() - started} ms`);

    // ---- two control planes: hub runs the server, edge runs the agent (and shell pods) ----
    [this.hub, this.edge] = await Promise.all([
      startTestCluster({
        workloadControllers: true,
        probes: true,
        strictImages: true,
        imageArchives: {
          [SERVER_IMAGE.repository]: archive('periscope-server'),
          [SHELL_IMAGE.repository]: archive('periscope-shell'),
        },
      }),
      startTestCluster({
        workloadControllers: true,
        probes: true,
        strictImages: true,
        imageArchives: {
          [AGENT_IMAGE.repository]: archive('periscope-agent'),
          [SHELL_IMAGE.repository]: archive('periscope-shell'),
        },
      }),
    ]);
    const hub = this.hub;
    const edge = this.edge;
    deployLog(`control planes up after ${Date.now() - started} ms`);

    this.tunnelPort = await freePort();
    this.healthPort = await freePort();
    this.metricsPort = await freePort();
    // The Services' stand-ins: the public URL (UI Service, port 8080 of the pods) and the agent
    // tunnel (its Service port equals the pods' port), on 127.0.0.1 where the pods are not.
    this.web = new LoopbackService(hub, SERVER_NS, SERVER_SELECTOR, SERVER_HTTP_PORT);
    await this.web.start(await freePort());
    this.tunnel = new LoopbackService(hub, SERVER_NS, SERVER_SELECTOR, this.tunnelPort);
    await this.tunnel.start(this.tunnelPort);
    this.publicURL = `http://127.0.0.1:${this.web.port}`;
    this.oidc = await startIdp(this.publicURL, {
      [OPERATOR]: { email: 'ada@example.com', groups: ['platform-admins'] },
    });

    // ---- the server chart on hub ----
    await hub.kubectlOk(['create', 'namespace', SERVER_NS]);
    await hub.kubectlOk([
      '-n',
      SERVER_NS,
      'create',
      'secret',
      'generic',
      'periscope-oidc',
      `--from-literal=client-secret=${this.oidc.clientSecret}`,
    ]);
    await opts.beforeServer?.(hub);
    try {
      await this.install(hub, 'periscope', 'periscope', SERVER_NS, {
        publicURL: this.publicURL,
        logLevel: 'info',
        clusters: [
          { name: 'edge', backend: 'agent', environment: 'dev' },
          { name: 'hub', backend: 'in-cluster', environment: 'dev' },
        ],
        auth: {
          oidc: { issuer: this.oidc.issuer, clientID: this.oidc.clientId, providerName: 'Test IdP' },
          authorization: { mode: 'tier', groupTiers: { 'platform-admins': 'admin' } },
        },
        oidcClientSecret: { existingSecret: 'periscope-oidc', existingSecretKey: 'client-secret' },
        clusterShell: { enabled: true, tiers: ['admin'], namespace: SHELL_NS, networkPolicy: LOCAL_EGRESS },
        clusterRBAC: { enabled: true, adminTier: { enabled: true } },
        agentTunnel: {
          url: `https://127.0.0.1:${this.tunnelPort}`,
          port: this.tunnelPort,
          caSecret: 'periscope-agent-ca',
          // helm --wait waits for a LoadBalancer's address, which nothing here assigns.
          service: { type: 'ClusterIP' },
        },
        // No PersistentVolume provisioner here: the audit store lives in an emptyDir (or
        // PostgreSQL) and the agent CA in a Secret (the chart requires one of the two for the tunnel).
        persistence: { enabled: false },
        // A free port for the ops listener (every pod of the Deployment uses it, each on its IP).
        metrics: { port: this.metricsPort },
        ...opts.serverValues,
      });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${await this.diagnose(hub, SERVER_NS)}`);
    }
    const servers = await this.serverPods();
    expect(servers.filter((p) => p.ready)).toHaveLength(opts.serverReplicas ?? 1);
    for (const pod of servers)
      await this.readyNow(`http://${pod.ip}:${this.metricsPort}/readyz`, () => this.diagnose(hub, SERVER_NS));
    deployLog(
      `server ready after ${Date.now() - started} ms (${servers.map((p) => `${p.name}=${p.ip}`).join(', ')})`,
    );

    // ---- sign in, mint the agent's registration token ----
    this.cookie = await sessionCookie(this.publicURL, this.oidc, OPERATOR);
    const minted = await fetch(`${this.publicURL}/api/agents/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie: this.cookie },
      body: JSON.stringify({ cluster: 'edge' }),
    });
    expect(minted.status, await minted.clone().text()).toBe(201);
    const { token } = (await minted.json()) as { token: string };

    // ---- the agent chart on edge ----
    await edge.kubectlOk(['create', 'namespace', AGENT_NS]);
    await edge.kubectlOk([
      '-n',
      AGENT_NS,
      'create',
      'secret',
      'generic',
      'periscope-agent-registration',
      `--from-literal=token=${token}`,
    ]);
    try {
      await this.install(edge, 'periscope-agent', 'periscope-agent', AGENT_NS, {
        agent: {
          serverURL: `https://127.0.0.1:${this.tunnelPort}`,
          registrationURL: this.publicURL,
          clusterName: 'edge',
          registrationToken: { existingSecret: 'periscope-agent-registration' },
          healthPort: this.healthPort,
        },
        clusterShell: { enabled: true, tiers: ['admin'], namespace: SHELL_NS, networkPolicy: LOCAL_EGRESS },
        clusterRBAC: { enabled: true, adminTier: { enabled: true } },
      });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${await this.diagnose(edge, AGENT_NS)}`);
    }
    // The agent is ready once its tunnel to the server is up.
    const agent = await this.agentPod();
    await this.readyNow(`http://${agent.ip}:${this.healthPort}/readyz`, () => this.diagnose(edge, AGENT_NS));
    deployLog(`agent ready after ${Date.now() - started} ms (${agent.name}=${agent.ip})`);
  }

  /** Uninstalls what is still installed, stops both planes, the provider and the stand-ins. */
  async stop(): Promise<void> {
    for (const { cluster, release, ns } of this.installed.reverse()) {
      try {
        // No --wait: a namespace the chart created stays Terminating (there is no namespace
        // controller to finalize it), which helm would wait for.
        await this.helm(cluster, ['uninstall', release, '--namespace', ns], 180_000);
      } catch (err) {
        deployLog(`uninstall ${release}: ${(err as Error).message}`);
      }
    }
    this.installed.length = 0;
    await Promise.all([this.hub?.stop(), this.edge?.stop()]);
    await Promise.all([this.web?.stop(), this.tunnel?.stop(), this.oidc?.stop()]);
    rmSync(this.work, { recursive: true, force: true });
  }

  /** Removes a release (helm uninstall, no --wait) and forgets it. */
  async uninstall(cluster: TestCluster, release: string, ns: string): Promise<void> {
    await this.helm(cluster, ['uninstall', release, '--namespace', ns]);
    const i = this.installed.findIndex((r) => r.release === release);
    if (i >= 0) this.installed.splice(i, 1);
  }

  /**
   * One cluster-shell session as the browser runs it (ticket, WebSocket, raw keystrokes), opened
   * through `via` (default: the public URL): `kubectl auth whoami` shows the operator narrowed to
   * the admin tier, `exit` closes it with 0. Then Periscope's audit, the cluster's audit (who
   * created the session objects, who called as whom) and the cleanup are checked.
   */
  async shellSession(
    clusterName: string,
    cluster: TestCluster,
    provisioner: string,
    via: string = this.publicURL,
    /** Runs while the session is live (after `kubectl auth whoami` answered). */
    whileOpen?: (sessionId: string) => Promise<void>,
  ): Promise<void> {
    const cookie = this.cookie;
    const res = await fetch(`${via}/api/clusters/${clusterName}/shell/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie },
      body: '{}',
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { sessionId, socketPath } = (await res.json()) as { sessionId: string; socketPath: string };
    const term = new TerminalClient(`${via.replace('http', 'ws')}${socketPath}`, {
      cookie,
      origin: this.publicURL,
    });
    await term.opened;
    term.control({ type: 'resize', cols: 120, rows: 30 });
    await until(
      'the shell prompt',
      () => term.frames.some((f) => f['type'] === 'status' && f['phase'] === 'attaching') && term.bytes > 0,
      90_000,
    ).catch(async (err: unknown) => {
      throw new Error(
        `${(err as Error).message}; frames ${JSON.stringify(term.frames)}\n${await this.diagnose(cluster, SHELL_NS)}`,
      );
    });
    term.type('kubectl auth whoami\n');
    await term.waitText('whoami', /Username\s+ada[\s\S]*periscope-tier:admin/, 60_000);
    await whileOpen?.(sessionId);
    // The session pod is the shell image: its pinned kubectl and helm (SHA-256 of the contents
    // listing), nano as the editor, the audit wrapper's symlinks, a non-root user.
    const contents = JSON.parse(readFileSync(this.built.get('periscope-shell')!.contents, 'utf8')) as {
      tools: { sha256: string; path: string }[];
    };
    term.type(
      'echo "uid=$(id -u) editor=$KUBE_EDITOR links=$(readlink /usr/local/bin/kubectl),$(readlink /usr/local/bin/helm)"; sha256sum /opt/periscope/bin/kubectl-real /opt/periscope/bin/helm-real\n',
    );
    await term.waitText(
      'the image checks',
      new RegExp(contents.tools.map((t) => `${t.sha256}  ${t.path}`).join('\\s+')),
      60_000,
    );
    expect(term.text()).toContain('uid=1000 editor=nano links=periscope-audit-exec,periscope-audit-exec');
    term.type('exit\n');
    await term.closed;
    expect(term.frames).toContainEqual({ type: 'closed', reason: 'exit', exitCode: 0 });

    // Periscope's audit: open and close, the command and its exit status.
    const audit = await until(
      'the close audit event',
      async () => {
        const r = await fetch(`${via}/api/audit?session_id=${sessionId}`, { headers: { cookie } });
        const body = (await r.json()) as {
          events: { verb: string; actor: string; cluster: string; body: Record<string, unknown> }[];
        };
        return body.events.some((e) => e.verb === 'cluster_shell_close') ? body.events : undefined;
      },
      30_000,
    );
    expect(audit.map((e) => e.verb).sort()).toEqual(['cluster_shell_close', 'cluster_shell_open']);
    const close = audit.find((e) => e.verb === 'cluster_shell_close')!;
    expect(close.actor).toBe(OPERATOR);
    expect(close.cluster).toBe(clusterName);
    expect(close.body).toMatchObject({ exit_code: 0, close_reason: 'exit' });
    const commands = close.body['commands'] as { argv: string[]; exit_code: number }[];
    expect(commands.map((c) => [c.argv.slice(1, 3).join(' '), c.exit_code])).toEqual([['auth whoami', 0]]);

    // The cluster's audit: the provisioner's in-cluster ServiceAccount made the session objects;
    // the operator's call came from the session pod, impersonating the operator with one tier group.
    const events = cluster.auditEvents();
    // (the object's own create: the local node's binder creates the pod's `binding` subresource
    // with its own credentials, and the log may hold that before the pod's create)
    const madeBy = (resource: string): string | undefined =>
      events.find(
        (e) =>
          e.verb === 'create' &&
          e.objectRef?.resource === resource &&
          e.objectRef.subresource === undefined &&
          e.objectRef.namespace === SHELL_NS &&
          e.objectRef.name === `periscope-shell-${sessionId}`,
      )?.user.username;
    expect(madeBy('pods')).toBe(provisioner);
    expect(madeBy('secrets')).toBe(provisioner);
    expect(madeBy('serviceaccounts')).toBe(provisioner);
    const whoami = events.find(
      (e) =>
        e.objectRef?.resource === 'selfsubjectreviews' &&
        e.impersonatedUser?.extra?.['audit.periscope.io/session-id']?.[0] === sessionId,
    );
    // The session's own ServiceAccount: even without the impersonation, the call names the session.
    expect(whoami?.user.username).toBe(`system:serviceaccount:${SHELL_NS}:periscope-shell-${sessionId}`);
    expect(whoami?.impersonatedUser?.username).toBe(OPERATOR);
    expect(whoami?.impersonatedUser?.groups?.filter((g) => g.startsWith('periscope-tier:'))).toEqual([
      'periscope-tier:admin',
    ]);

    // Nothing of the session is left.
    await cluster.waitFor(
      'the session pod, Secret and identity to be gone',
      async () =>
        (
          await cluster.kubectlOk([
            '-n',
            SHELL_NS,
            'get',
            'pods,secrets,serviceaccounts,clusterroles,clusterrolebindings',
            '-l',
            `periscope.io/session-id=${sessionId}`,
            '-o',
            'name',
          ])
        ).trim() === '',
      60_000,
    );
  }
}
