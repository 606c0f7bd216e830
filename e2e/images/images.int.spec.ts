/**
 * The OCI images of `npm run images` (e2e/images/build.ts), checked as a user would receive them:
 * - `skopeo inspect` of each archive shows the config its Dockerfile declares (user, entrypoint,
 *   cmd, working directory, environment, labels, ports), and the layers hold every path the
 *   Dockerfile's final stage copies or makes (the two builders agree);
 * - assembling again with the same inputs gives the same manifest digests;
 * - on the local control plane with `--image-archive` and `--strict-images`, a pod of the shell
 *   image runs from the archive (the image's entrypoint, user and environment; kubectl and helm
 *   are the image's pinned binaries by SHA-256), and a pod of an image that was never built waits
 *   in ErrImagePull/ImagePullBackOff, as `kubectl describe` shows.
 *
 * The images are built once per set of inputs and cached under ~/.cache/periscope-images: a cold
 * build (two mmdebstrap runs, two `npm ci --omit=dev`) takes minutes; a warm one, seconds.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';

import * as k8s from '@kubernetes/client-node';
import { discoverClusterCa, ProvisionError, ShellProvisioner } from '@periscope/cluster-ops';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { shellNamespaceRbac } from '../cluster-ops/shell-rbac';

import { startTestCluster, type TestCluster } from '../k8s/cluster';
import { execForm, readDockerfile, copies, runs } from '../shell/dockerfile';
import { readShellImageLayout, REPO_ROOT } from '../shell/image-layout';
import { until } from '../support/wait';
import { buildImages, IMAGES, productionClosure, type BuiltImage, type ImageName } from './build';

interface OciConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, unknown>;
}

const built = new Map<ImageName, BuiltImage>();
let work: string;

function skopeoConfig(archive: string): OciConfig {
  const out = execFileSync('skopeo', ['inspect', '--config', `oci-archive:${archive}`], {
    encoding: 'utf8',
    maxBuffer: 16 * 1024 * 1024,
  });
  return (JSON.parse(out) as { config: OciConfig }).config;
}

/** Every path in the image's layers (no leading ./), read with skopeo's copy to a directory. */
function imagePaths(name: ImageName, archive: string): Set<string> {
  const dir = join(work, `${name}-dir`);
  rmSync(dir, { recursive: true, force: true });
  execFileSync('skopeo', ['copy', '--quiet', `oci-archive:${archive}`, `dir:${dir}`], { stdio: 'pipe' });
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
    layers: { digest: string }[];
  };
  const paths = new Set<string>();
  for (const l of manifest.layers) {
    const list = execFileSync('tar', ['-tzf', join(dir, l.digest.replace('sha256:', ''))], {
      encoding: 'utf8',
      maxBuffer: 512 * 1024 * 1024,
    });
    for (const p of list.split('\n')) if (p !== '') paths.add(posix.normalize(`/${p}`).replace(/\/$/, ''));
  }
  return paths;
}

/** One file of the image, from its topmost layer that has it (undefined if none). */
function imageFile(name: ImageName, archive: string, path: string): string | undefined {
  const dir = join(work, `${name}-file`);
  rmSync(dir, { recursive: true, force: true });
  execFileSync('skopeo', ['copy', '--quiet', `oci-archive:${archive}`, `dir:${dir}`], { stdio: 'pipe' });
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
    layers: { digest: string }[];
  };
  for (const l of [...manifest.layers].reverse()) {
    const r = spawnSync('tar', ['-xzOf', join(dir, l.digest.replace('sha256:', '')), `.${path}`], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    if (r.status === 0) return r.stdout;
  }
  return undefined;
}

/** What a Dockerfile's final stage declares, read independently of the builder. */
function declared(dockerfile: string): {
  user: string;
  entrypoint: string[];
  cmd?: string[];
  workdir: string;
  env: string[];
  paths: string[];
  ports: string[];
} {
  const file = readDockerfile(dockerfile);
  let workdir = '/';
  let user = '';
  let entrypoint: string[] = [];
  let cmd: string[] | undefined;
  const env: string[] = [];
  const paths: string[] = [];
  const ports: string[] = [];
  for (const i of file.final.instructions) {
    if (i.keyword === 'WORKDIR') workdir = posix.resolve(workdir, i.args);
    if (i.keyword === 'USER') user = i.args;
    if (i.keyword === 'ENTRYPOINT') entrypoint = execForm(i.args);
    if (i.keyword === 'CMD') cmd = execForm(i.args);
    if (i.keyword === 'EXPOSE') ports.push(`${i.args}/tcp`);
    if (i.keyword === 'ENV') env.push(...i.args.split(' ').filter((w) => w.includes('=')));
    if (i.keyword === 'COPY') {
      for (const c of copies({ ...file.final, instructions: [i] })) {
        for (const s of c.sources) {
          if (s === '/src/') continue; // the production dependencies: checked below by name
          const dest = posix.resolve(workdir, c.dest);
          paths.push(c.dest.endsWith('/') && !s.endsWith('/') ? posix.join(dest, posix.basename(s)) : dest);
        }
      }
    }
  }
  for (const r of runs(file.final)) {
    for (const m of r.matchAll(/install -d (?:-\S+ \S+ )*((?:\/\S+ ?)+)/g))
      paths.push(...m[1]!.trim().split(' '));
    for (const m of r.matchAll(/ln -s \S+ (\/\S+)/g)) paths.push(m[1]!);
  }
  return { user, entrypoint, ...(cmd ? { cmd } : {}), workdir, env, paths, ports };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'periscope-images-e2e-'));
  for (const image of await buildImages({ log: (l) => process.stderr.write(`[images] ${l}\n`) }))
    built.set(image.name, image);
}, 60 * 60_000);

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe('npm run images', () => {
  it.each(Object.entries(IMAGES) as [ImageName, string][])(
    '%s: skopeo inspect shows the config %s declares, and the layers hold what it copies',
    (name, dockerfile) => {
      const image = built.get(name)!;
      const cfg = skopeoConfig(image.archive);
      const want = declared(dockerfile);
      expect(cfg.User).toBe(want.user);
      expect(cfg.User).toBe('1000:1000');
      expect(cfg.Entrypoint).toEqual(want.entrypoint);
      if (want.cmd) expect(cfg.Cmd).toEqual(want.cmd);
      expect(cfg.WorkingDir).toBe(want.workdir);
      for (const kv of want.env) expect(cfg.Env).toContain(kv);
      expect(Object.keys(cfg.ExposedPorts ?? {})).toEqual(want.ports);
      expect(cfg.Labels?.['org.opencontainers.image.title']).toBe(
        name === 'periscope-server' ? 'periscope' : name,
      );
      expect(cfg.Labels?.['org.opencontainers.image.version']).toBe('0.1.0');

      const paths = imagePaths(name, image.archive);
      const missing = want.paths.filter((p) => !paths.has(p));
      expect(missing).toEqual([]);
      if (name !== 'periscope-shell') {
        // `COPY --from=prod-deps /src/ ./`: the manifests and production dependencies only.
        expect(paths.has('/app/node_modules')).toBe(true);
        expect(paths.has('/app/package-lock.json')).toBe(true);
        expect(paths.has('/app/node_modules/vitest')).toBe(false);
        expect(paths.has('/usr/local/bin/node')).toBe(true);
        // the compile stage deletes tests and build info from its output
        expect(
          [...paths].filter((p) => /^\/app\/(apps|libs)\//.test(p) && /\.spec\.|\.tsbuildinfo$/.test(p)),
        ).toEqual([]);
      }
      if (name === 'periscope-server')
        expect(paths.has('/app/node_modules/better-sqlite3/build/Release/better_sqlite3.node')).toBe(true);
      if (name === 'periscope-shell') {
        // docker/shell-image.json, the shell image's filesystem contract
        const layout = readShellImageLayout();
        expect(cfg.Entrypoint).toEqual(layout.entrypoint);
        expect(cfg.Cmd).toEqual(layout.cmd);
        expect(cfg.User).toBe(layout.user);
        for (const [k, v] of Object.entries(layout.env)) expect(cfg.Env).toContain(`${k}=${v}`);
        for (const f of [
          ...layout.files,
          ...layout.symlinks,
          ...layout.directories.filter((d) => d.mountPoint !== true),
        ])
          expect(paths.has(f.path), f.path).toBe(true);
        expect(paths.has(layout.runtime)).toBe(true);
        for (const pkg of layout.packages)
          expect(paths.has(`/usr/share/doc/${pkg}/copyright`) || pkg === 'coreutils', pkg).toBe(true);
        expect(paths.has('/usr/bin/vi') || paths.has('/usr/bin/vim')).toBe(false);
      }
    },
  );

  it.each([
    ['periscope-server', '@periscope/server'],
    ['periscope-agent', '@periscope/agent'],
  ] as [ImageName, string][])(
    "%s: the dependencies cache key (%s's production closure of the lock file) is exactly what npm installed",
    (name, workspace) => {
      const archive = built.get(name)!.archive;
      const lock = readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8');
      const installed = JSON.parse(
        imageFile(name, archive, '/app/node_modules/.package-lock.json') ?? '{}',
      ) as {
        packages?: Record<string, unknown>;
      };
      const closure = productionClosure(
        JSON.parse(lock) as Parameters<typeof productionClosure>[0],
        workspace,
      );
      expect(Object.keys(installed.packages ?? {}).sort()).toEqual(Object.keys(closure).sort());
      for (const [path, entry] of Object.entries(closure))
        expect(installed.packages?.[path], path).toEqual(entry);
      // The manifests are the checkout's (copied beside the cached node_modules), not the cache's.
      expect(imageFile(name, archive, '/app/package-lock.json')).toBe(lock);
      expect(imageFile(name, archive, '/app/package.json')).toBe(
        readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'),
      );
      expect(imageFile(name, archive, '/app/.complete')).toBeUndefined();
    },
  );

  it('writes a contents listing with kubectl and helm versions and SHA-256', () => {
    const contents = JSON.parse(readFileSync(built.get('periscope-shell')!.contents, 'utf8')) as {
      tools: { name: string; version: string; sha256: string; path: string }[];
      base: { packages: string[] };
      node: { version: string };
    };
    expect(contents.tools.map((t) => `${t.name} ${t.version}`)).toEqual(['kubectl v1.36.3', 'helm v3.22.0']);
    for (const t of contents.tools) expect(t.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(contents.base.packages.some((p) => p.startsWith('nano='))).toBe(true);
    expect(contents.node.version).toBe('24.18.0');
  });

  it(
    'gives the same digests when built again from the same inputs',
    async () => {
      const again = await buildImages({
        images: ['periscope-shell', 'periscope-agent'],
        noCache: true,
        log: () => {},
      });
      for (const image of again) {
        expect(image.cached).toBe(false);
        expect(image.manifestDigest).toBe(built.get(image.name)!.manifestDigest);
      }
    },
    30 * 60_000,
  );
});

describe('the local node runs pods from the image archives', () => {
  let cluster: TestCluster;
  const ns = 'images-e2e';
  const shellImage = 'registry.example/periscope/periscope-shell:0.1.0';

  beforeAll(async () => {
    cluster = await startTestCluster({
      imageArchives: { 'registry.example/periscope/periscope-shell': built.get('periscope-shell')!.archive },
      strictImages: true,
    });
    await cluster.createNamespace(ns);
    const pod = (name: string, image: string, extra: Record<string, unknown> = {}): unknown => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns },
      spec: {
        restartPolicy: 'Never',
        automountServiceAccountToken: false,
        terminationGracePeriodSeconds: 2,
        // runAsNonRoot without runAsUser: only the image's USER 1000:1000 satisfies it.
        securityContext: { runAsNonRoot: true },
        containers: [{ name: 'shell', image, ...extra }],
        volumes: [{ name: 'session', secret: { secretName: 'session' } }],
      },
    });
    await cluster.apply(
      [
        {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'session', namespace: ns },
          stringData: { kubeconfig: 'apiVersion: v1\nkind: Config\n' },
        },
        // No command or args: the image's ENTRYPOINT and CMD (`periscope-shell hold`).
        pod('from-archive', shellImage, {
          env: [
            { name: 'PERISCOPE_SHELL_SESSION_ID', value: 'images-e2e' },
            { name: 'PERISCOPE_SHELL_MODE', value: 'bash' },
            { name: 'PERISCOPE_SHELL_AUDIT_FILE', value: '/tmp/periscope-shell/audit.jsonl' },
          ],
          volumeMounts: [{ name: 'session', mountPath: '/etc/periscope', readOnly: true }],
        }),
        pod('never-built', 'registry.example/periscope/never-built:1.0.0', { command: ['sleep', '60'] }),
      ]
        .map((m) => JSON.stringify(m))
        .join('\n'),
    );
  }, 180_000);

  afterAll(async () => {
    await (cluster as TestCluster | undefined)?.stop();
  });

  it('starts the shell image with its entrypoint, user and environment; kubectl and helm are the pinned binaries', async () => {
    await cluster.kubectlOk(
      ['-n', ns, 'wait', '--for=condition=Ready', 'pod/from-archive', '--timeout=90s'],
      { timeoutMs: 100_000 },
    );
    const logs = await until(
      'periscope-shell hold to report ready',
      async () => {
        const r = await cluster.kubectl(['-n', ns, 'logs', 'from-archive']);
        return r.stdout.includes('ready (mode bash)') ? r.stdout : undefined;
      },
      60_000,
    );
    expect(logs).toContain('session images-e2e ready');
    const out = await cluster.kubectlOk([
      '-n',
      ns,
      'exec',
      'from-archive',
      '--',
      'bash',
      '-c',
      'id -u; id -g; echo "$KUBE_EDITOR"; pwd; readlink /usr/local/bin/kubectl /usr/local/bin/helm; sha256sum /opt/periscope/bin/kubectl-real /opt/periscope/bin/helm-real; cat /etc/os-release | grep VERSION_CODENAME; test -e /usr/bin/vi && echo has-vi || echo no-vi',
    ]);
    const contents = JSON.parse(readFileSync(built.get('periscope-shell')!.contents, 'utf8')) as {
      tools: { name: string; sha256: string; path: string }[];
    };
    const lines = out.trim().split('\n');
    expect(lines.slice(0, 4)).toEqual(['1000', '1000', 'nano', '/home/periscope']);
    expect(lines.slice(4, 6)).toEqual(['periscope-audit-exec', 'periscope-audit-exec']);
    for (const t of contents.tools) expect(out).toContain(`${t.sha256}  ${t.path}`);
    expect(out).toContain('VERSION_CODENAME=bookworm');
    expect(lines.at(-1)).toBe('no-vi');
    const status = JSON.parse(
      await cluster.kubectlOk(['-n', ns, 'get', 'pod', 'from-archive', '-o', 'json']),
    ) as {
      status: { containerStatuses: { imageID: string }[] };
    };
    expect(status.status.containerStatuses[0]!.imageID).toBe(
      `registry.example/periscope/periscope-shell@${built.get('periscope-shell')!.manifestDigest}`,
    );
    // kubectl inside, through the audit wrapper, is the image's own binary
    const version = await cluster.kubectlOk([
      '-n',
      ns,
      'exec',
      'from-archive',
      '--',
      'kubectl',
      'version',
      '--client',
      '-o',
      'json',
    ]);
    expect((JSON.parse(version) as { clientVersion: { gitVersion: string } }).clientVersion.gitVersion).toBe(
      'v1.36.3',
    );
  }, 240_000);

  it('fails a pod whose image was never built with ErrImagePull, as kubectl describe shows', async () => {
    const describe = await until(
      'kubectl describe to show ErrImagePull',
      async () => {
        const r = await cluster.kubectl(['-n', ns, 'describe', 'pod', 'never-built']);
        return /Reason:\s+ErrImagePull/.test(r.stdout) ? r.stdout : undefined;
      },
      60_000,
    );
    // the reason's message, as a kubelet's Failed event says it
    expect(describe).toMatch(
      /Warning\s+Failed\s+.*Failed to pull image "registry\.example\/periscope\/never-built:1\.0\.0"/,
    );
    expect(describe).toContain('npm run images');
    const backoff = await until(
      'ImagePullBackOff',
      async () => {
        const r = await cluster.kubectl([
          '-n',
          ns,
          'get',
          'pod',
          'never-built',
          '-o',
          'jsonpath={.status.containerStatuses[0].state.waiting.reason}',
        ]);
        return r.stdout === 'ImagePullBackOff' ? r.stdout : undefined;
      },
      60_000,
    );
    expect(backoff).toBe('ImagePullBackOff');
  }, 180_000);

  it('names an image that cannot be pulled in the cluster-shell open progress', async () => {
    const shellNs = 'images-e2e-shell';
    await cluster.createNamespace(shellNs);
    await cluster.apply(shellNamespaceRbac(shellNs, ['admin'], { admin: 'view' }));
    const token = (
      await cluster.kubectlOk(['-n', shellNs, 'create', 'token', 'provisioner', '--duration=1h'])
    ).trim();
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cluster.kubeconfig('provisioner', { token }));
    const { caPem, server } = await discoverClusterCa(kc, { preferClusterInfo: true });
    const messages: string[] = [];
    const err = await new ShellProvisioner(kc)
      .provision(
        {
          namespace: shellNs,
          sessionId: '6f1c2d3e-4b5a-4c7d-8e9f-a0b1c2d3e4f5',
          tier: 'admin',
          image: 'registry.example/periscope/never-built:1.0.0',
          imagePullPolicy: 'IfNotPresent',
          mode: 'bash',
          subject: 'alice@example.com',
          server,
          caPem,
          tokenSeconds: 3600,
          podStartTimeoutMs: 8000,
        },
        (_phase, message) => messages.push(message),
      )
      .catch((e: unknown) => e);
    expect(messages.join('\n')).toMatch(
      /the shell image cannot be pulled: (ErrImagePull|ImagePullBackOff) \(failed to pull and unpack image "registry\.example\/periscope\/never-built:1\.0\.0"/,
    );
    expect(err).toBeInstanceOf(ProvisionError);
    expect((err as Error).message).toMatch(/ErrImagePull|ImagePullBackOff/);
  }, 120_000);
});
