/**
 * A session pod of the shell image on the local control plane. A second cluster is started with
 * the image mapped to an overlay assembled from docker/shell-image.json (the bundles built by the
 * workspace build script, the real kubectl and helm), so the pod runs the files the image ships:
 * `periscope-shell hold` as the main process, an operator session through `kubectl exec -it`, and
 * the audit file read back with a plain `cat`, as the server's teardown does.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { startTestCluster, type TestCluster } from '../k8s/cluster';
import { until } from '../support/wait';
import { assembleOverlay, bundleShellPrograms, readShellImageLayout, REPO_ROOT } from './image-layout';

const layout = readShellImageLayout();
const image = `${layout.image}:0.1.0`;
const ns = 'shell-e2e';
const sessionId = randomUUID();
const pod = `periscope-shell-${sessionId}`;
const auditFile = '/tmp/periscope-shell/audit.jsonl';

let work: string;
let cluster: TestCluster;

interface AuditLine {
  timestamp: string;
  pid: number;
  argv: string[];
  exit_code: number | null;
  duration_ms: number | null;
}

/** Drives a command under a real pseudo-terminal (see e2e/k8s/pty-exec.py). */
function underPty(
  args: string[],
  steps: Record<string, unknown>[],
): Promise<{ code: number; out: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      'python3',
      [join(REPO_ROOT, 'e2e/k8s/pty-exec.py'), '30', '120', '--', ...args],
      { timeout: 100_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), out: stdout, stderr });
      },
    );
    child.stdin?.end(steps.map((s) => JSON.stringify(s)).join('\n'));
  });
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'periscope-shell-e2e-'));
  const overlay = join(work, 'overlay');
  mkdirSync(overlay);
  const binDir = inject('cluster').binDir;
  assembleOverlay(overlay, layout, {
    bundles: bundleShellPrograms(join(work, 'dist')),
    tools: { kubectl: join(binDir, 'kubectl'), helm: join(binDir, 'helm') },
  });
  cluster = await startTestCluster({ imageMap: { [layout.image]: overlay } });

  await cluster.createNamespace(ns);
  // The session's identity: a service account that may read namespaces (enough for get, watch
  // and edit of a namespace) and nothing else.
  await cluster.apply(
    [
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'operator', namespace: ns } },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: 'shell-e2e-namespace-reader' },
        rules: [{ apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'list', 'watch'] }],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'shell-e2e-namespace-reader' },
        roleRef: {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: 'ClusterRole',
          name: 'shell-e2e-namespace-reader',
        },
        subjects: [{ kind: 'ServiceAccount', name: 'operator', namespace: ns }],
      },
    ]
      .map((m) => JSON.stringify(m))
      .join('\n'),
  );
  const token = (await cluster.kubectlOk(['-n', ns, 'create', 'token', 'operator', '--duration=1h'])).trim();
  const kubeconfig = stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'in-cluster',
        cluster: {
          server: cluster.url,
          'certificate-authority-data': Buffer.from(cluster.info.caPem).toString('base64'),
        },
      },
    ],
    users: [{ name: 'periscope-session', user: { token } }],
    contexts: [{ name: sessionId, context: { cluster: 'in-cluster', user: 'periscope-session' } }],
    'current-context': sessionId,
  });

  await cluster.apply(
    [
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: pod, namespace: ns },
        stringData: { kubeconfig },
      },
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: pod, namespace: ns, labels: { 'app.kubernetes.io/name': 'periscope-shell' } },
        spec: {
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: 5,
          securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000 },
          containers: [
            {
              name: 'shell',
              image,
              // The node has no image config: entrypoint, working directory and ENV come from the
              // same description the Dockerfile is checked against.
              command: [...layout.entrypoint, ...layout.cmd],
              workingDir: layout.workdir,
              stdin: true,
              tty: true,
              env: [
                ...Object.entries(layout.env).map(([name, value]) => ({ name, value })),
                { name: 'PERISCOPE_SHELL_SESSION_ID', value: sessionId },
                { name: 'PERISCOPE_SHELL_MODE', value: 'bash' },
                { name: 'PERISCOPE_SHELL_AUDIT_FILE', value: auditFile },
              ],
              securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
              volumeMounts: [{ name: 'session', mountPath: '/etc/periscope', readOnly: true }],
            },
          ],
          volumes: [
            {
              name: 'session',
              secret: { secretName: pod, items: [{ key: 'kubeconfig', path: 'kubeconfig' }] },
            },
          ],
        },
      },
    ]
      .map((m) => JSON.stringify(m))
      .join('\n'),
  );
  await cluster.kubectlOk(['-n', ns, 'wait', '--for=condition=Ready', `pod/${pod}`, '--timeout=60s']);
});

afterAll(async () => {
  // undefined when beforeAll failed before the cluster started
  await (cluster as TestCluster | undefined)?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('shell image on the local control plane', () => {
  it('holds the pod with periscope-shell hold as the main process', async () => {
    // Ready means the main process started; on a loaded machine Node may take a while to print.
    const ready = `periscope-shell: session ${sessionId} ready (mode bash); waiting for SIGTERM`;
    const logs = await until(
      'the hold line in the pod log',
      async () => {
        const l = await cluster.kubectlOk(['-n', ns, 'logs', pod]);
        return l.includes(ready) && l;
      },
      60_000,
    );
    expect(logs).toContain(ready);
    const ps = await cluster.kubectlOk([
      '-n',
      ns,
      'exec',
      pod,
      '--',
      'sh',
      '-c',
      'id -u; for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline; echo; done',
    ]);
    expect(ps).toMatch(/^1000\n/);
    expect(ps).toMatch(/node \/usr\/local\/bin\/periscope-shell hold/);
  });

  it('runs an audited operator session: kubectl, helm, a failure, Ctrl-C, nano, exit code', async () => {
    const session = await underPty(
      [
        join(cluster.info.binDir, 'kubectl'),
        '--kubeconfig',
        cluster.info.adminKubeconfig,
        '-n',
        ns,
        'exec',
        '-it',
        pod,
        '--',
        'periscope-shell',
      ],
      [
        { send: 'echo READY-$((20+1))\n' },
        { expect: 'READY-21', timeout: 30 },
        { send: 'kubectl get ns; echo "rc-get=$?"\n' },
        { expect: 'rc-get=0' },
        { send: 'helm version; echo "rc-helm=$?"\n' },
        { expect: 'rc-helm=0' },
        { send: 'kubectl get ns does-not-exist; echo "rc-fail=$?"\n' },
        { expect: 'rc-fail=1' },
        { send: 'kubectl get ns -w\n' },
        { expect: `${ns}\\s+Active` },
        { send: '\x03' },
        { send: 'echo "rc-watch=$?"\n' },
        { expect: 'rc-watch=\\d+' },
        {
          send: 'echo "kc=$KUBECONFIG editor=$KUBE_EDITOR"; touch "$HOME/.probe" && echo home-$((1+1))-ok\n',
        },
        { expect: 'home-2-ok' },
        { send: `kubectl edit ns ${ns}\n` },
        { expect: 'GNU nano' },
        // Ctrl-X: nano exits at once (nothing changed) and discards type-ahead, so wait for kubectl.
        { send: '\x18' },
        { expect: 'Edit cancelled, no changes made' },
        { send: 'echo "rc-edit=$?"\n' },
        { expect: 'rc-edit=0' },
        { send: 'exit 5\n' },
      ],
    );
    const out = session.out;
    expect(session.stderr, out).toBe('');
    expect(out).toMatch(/kube-system\s+Active/);
    expect(out).toMatch(/version\.BuildInfo\{Version:"v3\.\d+\.\d+"/);
    expect(out).toContain('namespaces "does-not-exist" not found');
    expect(out).toContain('kc=/etc/periscope/kubeconfig editor=nano');
    expect(out).toContain('Edit cancelled, no changes made.');
    // the session's exit code is bash's
    expect(session.code).toBe(5);

    // kubectl itself decides its status on Ctrl-C (it traps SIGINT: 1, or dies of it: 130); the
    // wrapper must record exactly what bash saw, which proves it outlived kubectl.
    const watchCode = Number(/rc-watch=(\d+)/.exec(out)?.[1]);
    expect(watchCode).not.toBeNaN();
    const raw = await cluster.kubectlOk(['-n', ns, 'exec', pod, '--', 'cat', auditFile]);
    const lines = raw
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as AuditLine);
    expect(lines.map((l) => [l.argv, l.exit_code])).toEqual([
      [['kubectl', 'get', 'ns'], 0],
      [['helm', 'version'], 0],
      [['kubectl', 'get', 'ns', 'does-not-exist'], 1],
      [['kubectl', 'get', 'ns', '-w'], watchCode],
      [['kubectl', 'edit', 'ns', ns], 0],
    ]);
    for (const line of lines) {
      expect(line.duration_ms).toEqual(expect.any(Number));
      expect(line.pid).toEqual(expect.any(Number));
      expect(Date.parse(line.timestamp)).not.toBeNaN();
    }
    process.stderr.write(`[shell-e2e] kubectl get -w after Ctrl-C: exit ${watchCode}; audit:\n${raw}`);
  });

  it('refuses a tool that is not on the allow-list inside the pod', async () => {
    const r = await cluster.kubectl([
      '-n',
      ns,
      'exec',
      pod,
      '--',
      'sh',
      '-c',
      'ln -sf /usr/local/bin/periscope-audit-exec /tmp/oc && /tmp/oc get pods',
    ]);
    expect(r.code).toBe(127);
    expect(r.stderr).toContain('"oc" is not an audited tool (allowed: kubectl, helm)');
  });

  it('ends with exit code 0 on SIGTERM when the pod is deleted (teardown)', async () => {
    const started = Date.now();
    await cluster.kubectlOk(['-n', ns, 'delete', 'pod', pod, '--wait=true', '--timeout=30s']);
    // well inside the 5 s grace period: the main process ended on SIGTERM, not on SIGKILL
    expect(Date.now() - started).toBeLessThan(4000);
    // the node records each container's exit code (the pod object is gone by now)
    expect(cluster.logTail('node', 200)).toMatch(
      new RegExp(`msg="container exited" pod=${ns}/${pod} container=shell code=0\\b`),
    );
  });
});
