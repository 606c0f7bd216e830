import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';

import * as k8s from '@kubernetes/client-node';
import { parse } from 'yaml';
import { beforeAll, describe, expect, inject, it } from 'vitest';

import { startTestCluster, TestClusterClient } from './cluster';
import { freePort } from './ports';

const cluster = new TestClusterClient(inject('cluster'));
const ns = `cp-${Date.now().toString(36)}`;

function pod(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns }, spec });
}

async function runningPod(name: string, spec: Record<string, unknown>): Promise<void> {
  await cluster.apply(pod(name, spec));
  await cluster.kubectlOk(['-n', ns, 'wait', '--for=condition=Ready', `pod/${name}`, '--timeout=60s']);
}

/** Processes on this machine whose command line contains `marker`. */
function processesWith(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').includes(marker))
        found.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return found.filter((p) => p !== process.pid);
}

function httpsJson(
  url: string,
  opts: { ca?: string; headers?: Record<string, string>; insecure?: boolean },
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
        rejectUnauthorized: opts.insecure !== true,
        headers: opts.headers ?? {},
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  await cluster.createNamespace(ns);
});

describe('local control plane', () => {
  it('1. is ready and runs the version we built', async () => {
    const ready = await httpsJson(`${cluster.url}/readyz`, {
      ca: cluster.info.caPem,
      headers: { authorization: `Bearer ${cluster.info.tokens.admin}` },
    });
    expect(ready.status).toBe(200);
    expect(ready.body).toBe('ok');
    const version = JSON.parse(await cluster.kubectlOk(['version', '-o', 'json'])) as {
      serverVersion: { gitVersion: string };
      clientVersion: { gitVersion: string };
    };
    expect(version.serverVersion.gitVersion).toBe('v1.36.3');
    expect(version.clientVersion.gitVersion).toBe('v1.36.3');
  });

  describe('2. pods with Secret volumes, exec, TTY and exit codes', () => {
    beforeAll(async () => {
      await cluster.apply(
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'creds', namespace: ns },
          stringData: { password: 'hunter2-from-secret' },
        }),
      );
      await runningPod('with-secret', {
        containers: [
          {
            name: 'main',
            image: 'debian:bookworm-slim',
            command: ['sleep', '3600'],
            volumeMounts: [{ name: 's', mountPath: '/etc/mysecret', readOnly: true }],
          },
        ],
        volumes: [{ name: 's', secret: { secretName: 'creds' } }],
      });
    });

    it('mounts the Secret at its mountPath, read-only', async () => {
      expect(
        await cluster.kubectlOk(['-n', ns, 'exec', 'with-secret', '--', 'cat', '/etc/mysecret/password']),
      ).toBe('hunter2-from-secret');
      const write = await cluster.kubectl([
        '-n',
        ns,
        'exec',
        'with-secret',
        '--',
        'sh',
        '-c',
        'echo x > /etc/mysecret/password',
      ]);
      expect(write.code).not.toBe(0);
      expect(write.stderr).toMatch(/Read-only file system/);
    });

    it('passes stdin through and reports exit codes', async () => {
      expect(
        await cluster.kubectlOk(['-n', ns, 'exec', '-i', 'with-secret', '--', 'cat'], {
          input: 'through stdin\n',
        }),
      ).toBe('through stdin\n');
      const r = await cluster.kubectl(['-n', ns, 'exec', 'with-secret', '--', 'sh', '-c', 'exit 3']);
      expect(r.code).toBe(3);
    });

    it('gives `kubectl exec -it` a real TTY whose size follows a resize', async () => {
      const steps = [
        { expect: '[#$] ' },
        { send: 'stty size\n' },
        { expect: '30 100' },
        { resize: [40, 120] },
        { send: 'sleep 0.5; stty size\n' },
        { expect: '40 120' },
        { send: 'exit 7\n' },
      ];
      const result = await new Promise<{ code: number; out: string }>((resolve) => {
        const child = execFile(
          'python3',
          [
            join(__dirname, 'pty-exec.py'),
            '30',
            '100',
            '--',
            join(cluster.info.binDir, 'kubectl'),
            '--kubeconfig',
            cluster.info.adminKubeconfig,
            '-n',
            ns,
            'exec',
            '-it',
            'with-secret',
            '--',
            'sh',
          ],
          { timeout: 60_000 },
          (err, stdout) => {
            resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), out: stdout });
          },
        );
        child.stdin?.end(steps.map((s) => JSON.stringify(s)).join('\n'));
      });
      expect(result.out).toContain('30 100');
      expect(result.out).toContain('40 120');
      expect(result.code).toBe(7);
    });
  });

  it('3. exec through @kubernetes/client-node (WebSocket) carries stdin, stdout and exit status', async () => {
    await runningPod('ws-exec', {
      containers: [{ name: 'main', image: 'busybox', command: ['sleep', '3600'] }],
    });
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cluster.info.adminKubeconfig);
    const exec = new k8s.Exec(kc);
    const run = (
      command: string[],
      input: string | undefined,
    ): Promise<{ out: string; status: k8s.V1Status }> =>
      new Promise((resolve, reject) => {
        const stdout = new PassThrough();
        let out = '';
        stdout.on('data', (c: Buffer) => (out += c.toString()));
        const stdin = input === undefined ? null : Readable.from([Buffer.from(input)]);
        exec
          .exec(ns, 'ws-exec', 'main', command, stdout, new PassThrough(), stdin, false, (status) => {
            setTimeout(() => {
              resolve({ out, status });
            }, 50);
          })
          .catch(reject);
      });
    const echoed = await run(['sh', '-c', 'cat; echo " done"'], 'from websocket');
    expect(echoed.out).toBe('from websocket done\n');
    expect(echoed.status.status).toBe('Success');
    const failed = await run(['sh', '-c', 'exit 3'], undefined);
    expect(failed.status.status).toBe('Failure');
    expect(failed.status.details?.causes).toContainEqual({ reason: 'ExitCode', message: '3' });
  });

  it('4. a TokenRequest bound to a Secret authenticates until the Secret is deleted', async () => {
    await cluster.kubectlOk(['-n', ns, 'create', 'serviceaccount', 'bound-sa']);
    await cluster.kubectlOk(['-n', ns, 'create', 'secret', 'generic', 'session-anchor']);
    const token = (
      await cluster.kubectlOk([
        '-n',
        ns,
        'create',
        'token',
        'bound-sa',
        '--bound-object-kind=Secret',
        '--bound-object-name=session-anchor',
        '--duration=1h',
      ])
    ).trim();
    const noCreds = cluster.kubeconfig('token-only', {});
    const whoami = await cluster.kubectlOk(
      ['auth', 'whoami', '--token', token, '-o', 'jsonpath={.status.userInfo.username}'],
      { kubeconfig: noCreds },
    );
    expect(whoami).toBe(`system:serviceaccount:${ns}:bound-sa`);
    await cluster.kubectlOk(['-n', ns, 'delete', 'secret', 'session-anchor', '--wait=true']);
    // The apiserver caches successful token authentications for up to 10 s.
    let after = await cluster.kubectl(['auth', 'whoami', '--token', token], { kubeconfig: noCreds });
    const deadline = Date.now() + 20_000;
    while (after.code === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      after = await cluster.kubectl(['auth', 'whoami', '--token', token], { kubeconfig: noCreds });
    }
    expect(after.code).not.toBe(0);
    expect(after.stderr).toMatch(/Unauthorized|must be logged in/i);
  });

  it('5. RBAC narrows impersonation to one tier group and the audit log records user extras with the Audit-ID', async () => {
    const manifests = [
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'impersonator', namespace: ns } },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: `${ns}-impersonate-read` },
        rules: [
          { apiGroups: [''], resources: ['users'], verbs: ['impersonate'] },
          {
            apiGroups: [''],
            resources: ['groups'],
            verbs: ['impersonate'],
            resourceNames: ['periscope-tier:read'],
          },
          {
            apiGroups: ['authentication.k8s.io'],
            resources: ['userextras/audit.periscope.io/session-id', 'userextras/audit.periscope.io/actor'],
            verbs: ['impersonate'],
          },
        ],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: `${ns}-impersonate-read` },
        roleRef: {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: 'ClusterRole',
          name: `${ns}-impersonate-read`,
        },
        subjects: [{ kind: 'ServiceAccount', name: 'impersonator', namespace: ns }],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'tier-read-view', namespace: ns },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'periscope-tier:read' }],
      },
    ];
    await cluster.apply(manifests.map((m) => JSON.stringify(m)).join('\n'));
    const token = (
      await cluster.kubectlOk(['-n', ns, 'create', 'token', 'impersonator', '--duration=1h'])
    ).trim();
    const saKc = cluster.kubeconfig('impersonator', { token });

    const asRead = await cluster.kubectl(
      ['-n', ns, 'get', 'pods', '--as', 'carol@example.com', '--as-group', 'periscope-tier:read'],
      { kubeconfig: saKc },
    );
    expect(asRead.stderr).toBe('');
    expect(asRead.code).toBe(0);
    const asAdmin = await cluster.kubectl(
      ['-n', ns, 'get', 'pods', '--as', 'carol@example.com', '--as-group', 'periscope-tier:admin'],
      { kubeconfig: saKc },
    );
    expect(asAdmin.code).not.toBe(0);
    expect(asAdmin.stderr).toMatch(
      /groups "periscope-tier:admin" is forbidden: .* cannot impersonate resource "groups"/,
    );

    const sessionId = randomUUID();
    const auditId = randomUUID();
    const res = await httpsJson(`${cluster.url}/api/v1/namespaces/${ns}/pods`, {
      ca: cluster.info.caPem,
      headers: {
        authorization: `Bearer ${token}`,
        'Impersonate-User': 'carol@example.com',
        'Impersonate-Group': 'periscope-tier:read',
        'Impersonate-Extra-audit.periscope.io%2Fsession-id': sessionId,
        'Audit-ID': auditId,
      },
    });
    expect(res.status).toBe(200);
    expect(res.headers['audit-id']).toBe(auditId);
    await cluster.waitFor('the audit event', () =>
      Promise.resolve(
        cluster.auditEvents().some((e) => e.auditID === auditId && e.stage === 'ResponseComplete'),
      ),
    );
    const event = cluster.auditEvents().find((e) => e.auditID === auditId && e.stage === 'ResponseComplete');
    expect(event?.user.username).toBe(`system:serviceaccount:${ns}:impersonator`);
    expect(event?.impersonatedUser).toMatchObject({
      username: 'carol@example.com',
      groups: ['periscope-tier:read', 'system:authenticated'],
      extra: { 'audit.periscope.io/session-id': [sessionId] },
    });
  });

  it('6. kube-public/cluster-info is readable anonymously and its CA verifies the apiserver', async () => {
    const anonymous = await httpsJson(
      `${cluster.url}/api/v1/namespaces/kube-public/configmaps/cluster-info`,
      { insecure: true },
    );
    expect(anonymous.status).toBe(200);
    const kubeconfig = parse((anonymous.body as { data: { kubeconfig: string } }).data.kubeconfig) as {
      clusters: { name: string; cluster: { server: string; 'certificate-authority-data': string } }[];
    };
    expect(kubeconfig.clusters).toHaveLength(1);
    expect(kubeconfig.clusters[0]!.name).toBe('');
    const ca = Buffer.from(
      kubeconfig.clusters[0]!.cluster['certificate-authority-data'],
      'base64',
    ).toString();
    const verified = await httpsJson(
      `${kubeconfig.clusters[0]!.cluster.server}/api/v1/namespaces/kube-public/configmaps/cluster-info`,
      { ca },
    );
    expect(verified.status).toBe(200);
    // A certificate that is not the cluster CA must not verify the apiserver (the check can fail).
    const notTheCa = readFileSync(join(cluster.info.stateDir, 'pki', 'admin.crt'), 'utf8');
    await expect(httpsJson(`${cluster.url}/readyz`, { ca: notTheCa })).rejects.toThrow(/certificate/);
  });

  it('9. gives each pod its own loopback address: pod IP, downward API, wildcard listeners, port-forward, release', async () => {
    const port = await freePort();
    const server = (name: string): Record<string, unknown> => ({
      containers: [
        {
          name: 'web',
          image: 'busybox',
          // python3 from the host (a dynamically linked program: the pod-ip shim applies), on the
          // wildcard address, as a chart's server would listen.
          command: [
            'sh',
            '-c',
            `mkdir -p /tmp/w && echo "${name} $POD_IP" > /tmp/w/who && cd /tmp/w && exec /usr/bin/python3 -m http.server ${port} --bind 0.0.0.0`,
          ],
          env: [{ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }],
        },
      ],
    });
    await Promise.all([runningPod('addr-a', server('addr-a')), runningPod('addr-b', server('addr-b'))]);
    const ipOf = async (name: string): Promise<{ podIP: string; podIPs: { ip: string }[]; hostIP: string }> =>
      JSON.parse(await cluster.kubectlOk(['-n', ns, 'get', 'pod', name, '-o', 'jsonpath={.status}'])) as {
        podIP: string;
        podIPs: { ip: string }[];
        hostIP: string;
      };
    const [a, b] = await Promise.all([ipOf('addr-a'), ipOf('addr-b')]);
    expect(a.podIP).toMatch(/^127\.1\.\d+\.\d+$/);
    expect(b.podIP).toMatch(/^127\.1\.\d+\.\d+$/);
    expect(a.podIP).not.toBe(b.podIP);
    expect(a.podIPs).toEqual([{ ip: a.podIP }]);
    expect(a.hostIP).toBe('127.0.0.1');
    // An exec in such a pod writes exactly what its command does (nsenter starts on the host,
    // where the shim's sandbox path does not exist: no ld.so "cannot be preloaded" line).
    const ex = await cluster.kubectl([
      '-n',
      ns,
      'exec',
      'addr-a',
      '--',
      'sh',
      '-c',
      'printf ok; printf err >&2',
    ]);
    expect({ code: ex.code, stdout: ex.stdout, stderr: ex.stderr }).toEqual({
      code: 0,
      stdout: 'ok',
      stderr: 'err',
    });
    // Both listen on the same port of the wildcard address; each answers at its own pod IP with
    // the address the downward API gave it.
    const who = async (url: string): Promise<string> => {
      for (let i = 0; ; i++) {
        try {
          return (await (await fetch(url)).text()).trim();
        } catch (err) {
          if (i >= 100) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    };
    expect(await who(`http://${a.podIP}:${port}/who`)).toBe(`addr-a ${a.podIP}`);
    expect(await who(`http://${b.podIP}:${port}/who`)).toBe(`addr-b ${b.podIP}`);
    // Not on the node's address.
    await expect(fetch(`http://127.0.0.1:${port}/who`)).rejects.toThrow();
    // kubectl port-forward reaches the pod's own listener.
    const pf = execFile(join(cluster.info.binDir, 'kubectl'), [
      '--kubeconfig',
      cluster.info.adminKubeconfig,
      '-n',
      ns,
      'port-forward',
      'pod/addr-b',
      `0:${port}`,
    ]);
    try {
      const local = await new Promise<number>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => {
          reject(new Error(`port-forward did not start: ${out}`));
        }, 20_000);
        pf.stdout?.on('data', (c: Buffer) => {
          out += c.toString();
          const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        });
      });
      expect(await who(`http://127.0.0.1:${local}/who`)).toBe(`addr-b ${b.podIP}`);
    } finally {
      pf.kill();
    }
    // Deleted: the address is released (the node's claim on <address>:1 is gone).
    await cluster.kubectlOk(['-n', ns, 'delete', 'pod', 'addr-a', 'addr-b', '--wait=true', '--timeout=30s']);
    const claimable = (ip: string): Promise<boolean> =>
      new Promise((resolve) => {
        const s = createServer();
        s.once('error', () => {
          resolve(false);
        });
        s.listen(1, ip, () =>
          s.close(() => {
            resolve(true);
          }),
        );
      });
    await cluster.waitFor(
      'both addresses to be released',
      async () => (await claimable(a.podIP)) && (await claimable(b.podIP)),
      10_000,
    );
  });

  it('7a. deleting a pod ends its processes', async () => {
    const marker = `3600.${Date.now() % 100000}`;
    await runningPod('doomed', {
      terminationGracePeriodSeconds: 5,
      containers: [{ name: 'main', image: 'busybox', command: ['sleep', marker] }],
    });
    expect(processesWith(`sleep ${marker}`).length).toBeGreaterThan(0);
    await cluster.kubectlOk(['-n', ns, 'delete', 'pod', 'doomed', '--wait=true', '--timeout=30s']);
    await cluster.waitFor(
      'the pod process to end',
      () => Promise.resolve(processesWith(`sleep ${marker}`).length === 0),
      10_000,
    );
  });
});

describe('local control plane lifecycle', () => {
  it('7b/8. a fresh cluster starts, reports its memory, and leaves no process behind when stopped', async () => {
    const started = Date.now();
    const fresh = await startTestCluster();
    const startMs = Date.now() - started;
    const marker = `7200.${Date.now() % 100000}`;
    try {
      await fresh.createNamespace('lifecycle');
      await fresh.apply(
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'p', namespace: 'lifecycle' },
          spec: { containers: [{ name: 'c', image: 'busybox', command: ['sleep', marker] }] },
        }),
      );
      await fresh.kubectlOk(['-n', 'lifecycle', 'wait', '--for=condition=Ready', 'pod/p', '--timeout=60s']);
      const rssKiB = fresh
        .pids()
        .map((pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0));
      const totalMiB = rssKiB.reduce((a, b) => a + b, 0) / 1024;
      process.stderr.write(
        `[measure] warm start ${startMs} ms; control plane RSS ${totalMiB.toFixed(0)} MiB (etcd, apiserver, node)\n`,
      );
      expect(totalMiB).toBeLessThan(2048);
    } finally {
      const pids = fresh.pids();
      const stateDir = fresh.info.stateDir;
      await fresh.stop();
      const alive = pids.filter((pid) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      });
      expect(alive).toEqual([]);
      expect(processesWith(stateDir)).toEqual([]);
      expect(processesWith(`sleep ${marker}`)).toEqual([]);
    }
  });

  it("a plane whose apiserver cannot start fails at once, with the apiserver's log", async () => {
    const started = Date.now();
    const err = await startTestCluster({ apiserverArgs: ['--no-such-flag'] }).catch(
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(
      /^kube-apiserver exited while waiting for kube-apiserver \/readyz/,
    );
    expect((err as Error).message).toContain('--- kube-apiserver log ---');
    expect(Date.now() - started).toBeLessThan(30_000); // not the 90 s readiness timeout
  });
});
