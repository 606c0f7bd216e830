import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ensureBinaries, type K8sBinaries } from './binaries';
import { AUDIT_POLICY, clusterInfoManifests } from './bootstrap';
import { writeKubeconfig, type KubeconfigUser } from './kubeconfig';
import { createPki, readPem, type Pki } from './pki';
import { freePort } from './ports';
import { ProcessGroup, sweepStaleRuns } from './processes';

export const NODE_NAME = 'periscope-node';
const RUN_PREFIX = 'periscope-k8s-';

/** Plain test users of the token file. `admin` is in system:masters; the others have no rights. */
export const TEST_USERS = ['admin', 'alice', 'bob'] as const;
export type TestUser = (typeof TEST_USERS)[number];

/** Everything a test needs to reach a running local cluster; serialisable across processes. */
export interface ClusterInfo {
  url: string;
  caFile: string;
  caPem: string;
  stateDir: string;
  binDir: string;
  adminKubeconfig: string;
  tokens: Record<TestUser, string>;
  auditLog: string;
  nodeName: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface AuditEvent {
  auditID: string;
  stage: string;
  verb: string;
  requestURI: string;
  user: { username: string; groups?: string[]; extra?: Record<string, string[]> };
  impersonatedUser?: { username: string; groups?: string[]; extra?: Record<string, string[]> };
  objectRef?: { resource?: string; namespace?: string; name?: string; subresource?: string };
  responseStatus?: { code?: number };
}

/**
 * What the node applies from an image it cannot pull: the OCI image config's entrypoint, default
 * arguments, environment and working directory (`docker inspect` names). Kubernetes' rules hold:
 * a container's `command` replaces Entrypoint + Cmd, its `args` replace Cmd, its `env` wins.
 */
export interface ImageConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  /** KEY=VALUE */
  Env?: string[];
  WorkingDir?: string;
}

export interface StartOptions {
  /** image reference → directory whose files are overlaid in containers of that image */
  imageMap?: Record<string, string>;
  /** image reference → its entrypoint, arguments, environment and working directory */
  imageConfig?: Record<string, ImageConfig>;
  /**
   * image reference → OCI image archive (`npm run images`, e2e/images/build.ts): containers of
   * that image run from the unpacked image (its entrypoint, cmd, env, working directory, user).
   */
  imageArchives?: Record<string, string>;
  /**
   * An image that is neither in `imageMap` nor in `imageArchives` fails to start like an unknown
   * image on a real node (ErrImagePull, ImagePullBackOff) instead of running host programs.
   */
  strictImages?: boolean;
  /**
   * Run Deployments (the node's stand-in for the deployment, replicaset and garbage-collector
   * controllers): ReplicaSets and Pods are created, status is reported, dependents are deleted
   * with their owner. Off by default: other tests apply Deployments only to check RBAC.
   */
  workloadControllers?: boolean;
  /**
   * Run startup and readiness probes (httpGet, tcpSocket): a container is Ready when they pass
   * instead of as soon as it runs. Off by default.
   */
  probes?: boolean;
  /** where run directories go (default: /dev/shm when present, else the OS temp dir) */
  root?: string;
  log?: (line: string) => void;
  /** extra kube-apiserver flags, e.g. `--service-account-max-token-expiration=1h` */
  apiserverArgs?: string[];
}

/** Helpers over a running cluster. Does not own its processes (see `startTestCluster`). */
export class TestClusterClient {
  constructor(readonly info: ClusterInfo) {}

  get url(): string {
    return this.info.url;
  }

  /** A kubeconfig for a token, for a user's client certificate, or with impersonation fields. */
  kubeconfig(name: string, user: KubeconfigUser): string {
    const dir = join(this.info.stateDir, 'kubeconfigs');
    mkdirSync(dir, { recursive: true });
    return writeKubeconfig(join(dir, `${name}.yaml`), this.info.url, this.info.caFile, user);
  }

  kubeconfigForUser(user: TestUser): string {
    return user === 'admin'
      ? this.info.adminKubeconfig
      : this.kubeconfig(user, { token: this.info.tokens[user] });
  }

  /** Runs the built kubectl (admin by default); never throws on a non-zero exit. */
  kubectl(
    args: string[],
    opts: { kubeconfig?: string; input?: string; timeoutMs?: number } = {},
  ): Promise<ExecResult> {
    return new Promise((resolve) => {
      const child = execFile(
        join(this.info.binDir, 'kubectl'),
        ['--kubeconfig', opts.kubeconfig ?? this.info.adminKubeconfig, ...args],
        { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => {
          const code =
            err === null
              ? 0
              : typeof (err as { code?: unknown }).code === 'number'
                ? (err as { code: number }).code
                : 1;
          resolve({ stdout, stderr, code });
        },
      );
      if (opts.input !== undefined) child.stdin?.end(opts.input);
      else child.stdin?.end();
    });
  }

  /** Like kubectl, but throws with stderr when the command fails. */
  async kubectlOk(
    args: string[],
    opts: { kubeconfig?: string; input?: string; timeoutMs?: number } = {},
  ): Promise<string> {
    const r = await this.kubectl(args, opts);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
    return r.stdout;
  }

  async apply(manifest: string, kubeconfig?: string): Promise<void> {
    await this.kubectlOk(['apply', '-f', '-'], {
      input: manifest,
      ...(kubeconfig !== undefined ? { kubeconfig } : {}),
    });
  }

  /** Every audit event written so far. */
  auditEvents(): AuditEvent[] {
    if (!existsSync(this.info.auditLog)) return [];
    return readFileSync(this.info.auditLog, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as AuditEvent);
  }

  /** Creates a namespace and waits until pods can be admitted in it (default SA + root CA). */
  async createNamespace(name: string): Promise<void> {
    await this.kubectlOk(['create', 'namespace', name]);
    await this.waitFor(`namespace ${name} to be initialised`, async () => {
      const sa = await this.kubectl(['-n', name, 'get', 'serviceaccount', 'default', '-o', 'name']);
      const cm = await this.kubectl(['-n', name, 'get', 'configmap', 'kube-root-ca.crt', '-o', 'name']);
      return sa.code === 0 && cm.code === 0;
    });
  }

  async waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await check()) return;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** A cluster started by this process; `stop()` ends every process and deletes its state. */
export class TestCluster extends TestClusterClient {
  constructor(
    info: ClusterInfo,
    private readonly processes: ProcessGroup,
    readonly pki: Pki,
  ) {
    super(info);
  }

  pids(): number[] {
    return this.processes.pids();
  }

  logTail(component: 'etcd' | 'kube-apiserver' | 'node', lines?: number): string {
    return this.processes.tail(component, lines);
  }

  /**
   * Stops one component of the control plane (fault tests): SIGKILL (default) is a crash,
   * SIGTERM a clean stop. `startComponent` brings it back with the same flags and state.
   */
  async stopComponent(
    component: 'etcd' | 'kube-apiserver' | 'node',
    signal: 'SIGTERM' | 'SIGKILL' = 'SIGKILL',
  ): Promise<void> {
    await this.processes.stop(component, signal);
  }

  /**
   * Starts a component stopped by `stopComponent` again and waits until it serves: the
   * apiserver's /readyz, the node's Ready condition (etcd: until the apiserver reads again).
   */
  async startComponent(component: 'etcd' | 'kube-apiserver' | 'node', timeoutMs = 90_000): Promise<void> {
    this.processes.restart(component);
    const check = async (): Promise<boolean> => {
      if (!this.processes.isRunning(component)) throw new Error(`${component} exited`);
      if (component === 'node') {
        const r = await this.kubectl([
          'get',
          'node',
          this.info.nodeName,
          '-o',
          'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        ]);
        return r.stdout.trim() === 'True';
      }
      return (
        (await httpsGet(`${this.info.url}/readyz`, this.info.caPem, this.info.tokens.admin)).status === 200
      );
    };
    await until(`${component} to serve again`, timeoutMs, check, () => this.processes.tail(component));
  }

  async stop(opts: { keepState?: boolean } = {}): Promise<void> {
    await this.processes.stopAll();
    if (opts.keepState !== true) rmSync(this.info.stateDir, { recursive: true, force: true });
  }
}

function defaultRoot(): string {
  return existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
}

function httpsGet(url: string, caPem: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { ca: caPem, headers: { authorization: `Bearer ${token}` }, timeout: 5000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

async function until(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
  diagnose: () => string,
  /** a reason to stop waiting at once (a process the wait depends on has exited) */
  dead: () => string | undefined = () => undefined,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const gone = dead();
    if (gone !== undefined) throw new Error(`${gone} while waiting for ${what}\n${diagnose()}`);
    try {
      if (await check()) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${diagnose()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Starts a fresh local control plane: etcd 3.6, a secure kube-apiserver (client-cert and token
 * auth, Node+RBAC, ServiceAccount issuer, audit log) and the process-backed node. Every process is
 * stopped on `stop()`, on process exit, and reaped by the next start if this process was killed.
 */
export async function startTestCluster(opts: StartOptions = {}): Promise<TestCluster> {
  // Ports are picked free, then bound by other processes a moment later; with test files starting
  // planes in parallel another process can take one in between. Start again on new ports then.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      if (attempt >= 3 || !/address already in use/.test((err as Error).message)) throw err;
      opts.log?.('a port was taken meanwhile; starting again on new ports');
    }
  }
}

async function startOnce(opts: StartOptions): Promise<TestCluster> {
  const log = opts.log ?? ((): void => undefined);
  const root = opts.root ?? defaultRoot();
  sweepStaleRuns(root, RUN_PREFIX);
  const bins: K8sBinaries = ensureBinaries({ quiet: true });
  const stateDir = mkdtempSync(join(root, RUN_PREFIX));
  const processes = new ProcessGroup(stateDir);
  try {
    const pkiDir = join(stateDir, 'pki');
    mkdirSync(pkiDir);
    const pki = createPki(pkiDir);
    const caPem = readPem(pki.caCert);
    const [etcdClient, etcdPeer, apiPort, nodePort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const url = `https://127.0.0.1:${apiPort}`;

    const tokens = Object.fromEntries(
      TEST_USERS.map((u) => [u, `${u}-${randomBytes(16).toString('hex')}`]),
    ) as Record<TestUser, string>;
    const tokenFile = join(pkiDir, 'tokens.csv');
    writeFileSync(
      tokenFile,
      [
        `${tokens.admin},testenv-admin,uid-admin,"system:masters"`,
        `${tokens.alice},alice@example.com,uid-alice,"devs"`,
        `${tokens.bob},bob@example.com,uid-bob,"devs"`,
      ].join('\n') + '\n',
      { mode: 0o600 },
    );
    const auditPolicy = join(stateDir, 'audit-policy.yaml');
    writeFileSync(auditPolicy, AUDIT_POLICY);
    const auditLog = join(stateDir, 'audit.log');

    log('starting etcd');
    processes.start('etcd', bins.etcd, [
      `--data-dir=${join(stateDir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);

    log('starting kube-apiserver');
    processes.start('kube-apiserver', bins.kubeApiserver, [
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--cert-dir=${join(stateDir, 'apiserver-certs')}`,
      `--tls-cert-file=${pki.apiserverCert}`,
      `--tls-private-key-file=${pki.apiserverKey}`,
      `--client-ca-file=${pki.caCert}`,
      `--token-auth-file=${tokenFile}`,
      '--authorization-mode=Node,RBAC',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${pki.saPub}`,
      `--service-account-signing-key-file=${pki.saKey}`,
      '--service-cluster-ip-range=10.96.0.0/12',
      '--endpoint-reconciler-type=none',
      '--kubelet-preferred-address-types=InternalIP',
      `--kubelet-client-certificate=${pki.kubeletClientCert}`,
      `--kubelet-client-key=${pki.kubeletClientKey}`,
      `--kubelet-certificate-authority=${pki.caCert}`,
      '--enable-admission-plugins=NodeRestriction',
      '--enable-priority-and-fairness=false',
      `--audit-policy-file=${auditPolicy}`,
      `--audit-log-path=${auditLog}`,
      '--audit-log-format=json',
      '--audit-log-maxsize=200',
      '--profiling=false',
      '--v=1',
      ...(opts.apiserverArgs ?? []),
    ]);
    await until(
      'kube-apiserver /readyz',
      90_000,
      async () => (await httpsGet(`${url}/readyz`, caPem, tokens.admin)).status === 200,
      () =>
        `--- kube-apiserver log ---\n${processes.tail('kube-apiserver')}\n--- etcd log ---\n${processes.tail('etcd')}`,
      () =>
        !processes.isRunning('etcd')
          ? 'etcd exited'
          : !processes.isRunning('kube-apiserver')
            ? 'kube-apiserver exited'
            : undefined,
    );
    if (!processes.isRunning('kube-apiserver'))
      throw new Error(`kube-apiserver exited:\n${processes.tail('kube-apiserver')}`);

    const adminKubeconfig = writeKubeconfig(join(stateDir, 'admin.kubeconfig'), url, pki.caCert, {
      clientCertFile: pki.adminCert,
      clientKeyFile: pki.adminKey,
    });
    const info: ClusterInfo = {
      url,
      caFile: pki.caCert,
      caPem,
      stateDir,
      binDir: bins.dir,
      adminKubeconfig,
      tokens,
      auditLog,
      nodeName: NODE_NAME,
    };
    const cluster = new TestCluster(info, processes, pki);

    log('bootstrapping cluster-info and RBAC');
    await cluster.apply(clusterInfoManifests(url, caPem));

    log('starting the process-backed node');
    const imageArgs = Object.entries(opts.imageMap ?? {}).flatMap(([image, dir]) => [
      '--image-map',
      `${image}=${dir}`,
    ]);
    Object.entries(opts.imageConfig ?? {}).forEach(([image, config], i) => {
      const file = join(stateDir, `image-config-${i}.json`);
      writeFileSync(file, JSON.stringify(config));
      imageArgs.push('--image-config', `${image}=${file}`);
    });
    for (const [image, archive] of Object.entries(opts.imageArchives ?? {}))
      imageArgs.push('--image-archive', `${image}=${archive}`);
    if (opts.strictImages === true) imageArgs.push('--strict-images');
    if (opts.workloadControllers === true) imageArgs.push('--workload-controllers');
    if (opts.probes === true) imageArgs.push('--probes');
    processes.start('node', bins.node, [
      `--kubeconfig=${adminKubeconfig}`,
      `--node-name=${NODE_NAME}`,
      `--listen=127.0.0.1:${nodePort}`,
      `--tls-cert=${pki.nodeCert}`,
      `--tls-key=${pki.nodeKey}`,
      `--state-dir=${join(stateDir, 'node')}`,
      '--apiserver-host=127.0.0.1',
      `--apiserver-port=${apiPort}`,
      ...imageArgs,
    ]);
    await until(
      'the node to be Ready and namespace default initialised',
      60_000,
      async () => {
        const r = await cluster.kubectl([
          'get',
          'node',
          NODE_NAME,
          '-o',
          'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        ]);
        const sa = await cluster.kubectl(['-n', 'default', 'get', 'serviceaccount', 'default', '-o', 'name']);
        return r.stdout.trim() === 'True' && sa.code === 0;
      },
      () => `--- node log ---\n${processes.tail('node')}`,
      () => (processes.isRunning('node') ? undefined : 'the node exited'),
    );
    log(`ready: ${url}`);
    return cluster;
  } catch (err) {
    await processes.stopAll(2000);
    rmSync(stateDir, { recursive: true, force: true });
    throw err;
  }
}
