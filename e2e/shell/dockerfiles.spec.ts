/**
 * Static checks of the three Dockerfiles (no container engine runs here): pinned base images,
 * verified downloads, non-root users, production-only dependencies, no HEALTHCHECK, and every
 * path the session pod, the charts and the programs rely on created by the shell image's build.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';

import { describe, expect, it } from 'vitest';

import {
  copies,
  execForm,
  readDockerfile,
  runs,
  stageArgs,
  stageNamed,
  type Dockerfile,
  type Stage,
} from './dockerfile';
import { readShellImageLayout, REPO_ROOT } from './image-layout';

const DIGEST_PINNED = /^[a-z0-9][a-z0-9./-]*(:[\w.-]+)?@sha256:[a-f0-9]{64}$/;
const SHA256 = /^[a-f0-9]{64}$/;

const shell = readDockerfile('docker/Dockerfile.shell');
const server = readDockerfile('docker/Dockerfile.server');
const agent = readDockerfile('docker/Dockerfile.agent');
const layout = readShellImageLayout();

function finalEnv(file: Dockerfile): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of file.final.instructions.filter((x) => x.keyword === 'ENV'))
    for (const m of i.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[m[1]!] = m[2]!.replace(/^"|"$/g, '');
  return env;
}

/** The stage and the earlier stages it is built FROM, nearest first. */
function ancestry(file: Dockerfile, stage: Stage): Stage[] {
  const chain = [stage];
  for (
    let parent = stageNamed(file, stage.from);
    parent !== undefined;
    parent = stageNamed(file, parent.from)
  )
    chain.push(parent);
  return chain;
}

function lastOf(stage: Stage, keyword: string): string | undefined {
  return stage.instructions.filter((i) => i.keyword === keyword).pop()?.args;
}

/** Workspace manifests npm needs to install from the lock file. */
function workspaceManifests(): string[] {
  const out: string[] = [];
  for (const group of ['apps', 'libs'])
    for (const name of readdirSync(join(REPO_ROOT, group)).sort())
      if (existsSync(join(REPO_ROOT, group, name, 'package.json'))) out.push(`${group}/${name}/package.json`);
  return out;
}

describe.each([
  ['Dockerfile.shell', shell],
  ['Dockerfile.server', server],
  ['Dockerfile.agent', agent],
])('docker/%s', (_name, file) => {
  it('pins every base image by digest', () => {
    for (const stage of file.stages) {
      if (stageNamed(file, stage.from) !== undefined && stageNamed(file, stage.from)!.index < stage.index)
        continue;
      expect(stage.image, `FROM ${stage.from}`).toMatch(DIGEST_PINNED);
    }
  });

  it('runs as a numeric non-root user (runAsNonRoot can verify it)', () => {
    const user = lastOf(file.final, 'USER');
    expect(user).toMatch(/^\d+(:\d+)?$/);
    expect(Number(user!.split(':')[0])).toBeGreaterThan(0);
  });

  it('has no HEALTHCHECK (Kubernetes probes do that) and an exec-form ENTRYPOINT', () => {
    expect(file.instructions.filter((i) => i.keyword === 'HEALTHCHECK')).toEqual([]);
    expect(() => execForm(lastOf(file.final, 'ENTRYPOINT') ?? '')).not.toThrow();
  });

  it('copies every workspace manifest before npm ci (npm needs them all)', () => {
    const copied = new Set(
      file.instructions.filter((i) => i.keyword === 'COPY').flatMap((i) => i.args.split(' ')),
    );
    for (const manifest of workspaceManifests()) expect(copied.has(manifest), manifest).toBe(true);
  });

  it('keeps node_modules, dist and everything else out of the build context', () => {
    const ignore = readFileSync(`${file.path}.dockerignore`, 'utf8').split('\n');
    expect(ignore).toContain('*');
    expect(ignore).toContain('**/node_modules');
    expect(ignore).toContain('**/dist');
  });
});

describe.each([
  ['server', server],
  ['agent', agent],
])('docker/Dockerfile.%s', (app, file) => {
  it('is multi-stage and ships production dependencies only', () => {
    expect(file.stages.length).toBeGreaterThanOrEqual(3);
    expect(runs(file.final).join('\n')).not.toMatch(/npm (ci|install)/);
    const moduleCopies = copies(file.final).filter(
      (c) => c.from !== undefined && c.sources.some((s) => s === '/src/' || s.includes('node_modules')),
    );
    expect(moduleCopies.length).toBeGreaterThan(0);
    for (const c of moduleCopies) {
      const source = stageNamed(file, c.from!)!;
      const install = runs(source).find((r) => /npm ci/.test(r));
      expect(install, `stage ${c.from} installs with --omit=dev`).toMatch(/--omit=dev/);
      expect(install).toContain(`--workspace @periscope/${app}`);
      // nothing but manifests and the install: no sources or build output in that stage or its parents
      const copied = ancestry(file, source).flatMap((s) => copies(s).flatMap((x) => x.sources));
      expect(copied.length).toBeGreaterThan(0);
      for (const path of copied) expect(path).toMatch(/(^|\/)package(-lock)?\.json$/);
    }
  });

  it(`starts apps/${app}/dist/main.js and copies it and every lib it references`, () => {
    const entry = execForm(lastOf(file.final, 'ENTRYPOINT')!);
    expect(entry).toEqual(['node', `apps/${app}/dist/main.js`]);
    expect(existsSync(join(REPO_ROOT, `apps/${app}/src/main.ts`))).toBe(true);
    expect(lastOf(file.final, 'WORKDIR')).toBe('/app');
    const dests = copies(file.final).map((c) => c.dest);
    expect(dests).toContain(`apps/${app}/dist/`);
    const tsconfig = JSON.parse(readFileSync(join(REPO_ROOT, `apps/${app}/tsconfig.json`), 'utf8')) as {
      references?: { path: string }[];
    };
    for (const ref of tsconfig.references ?? []) {
      const lib = posix.join(`apps/${app}`, ref.path);
      expect(dests, lib).toContain(`${lib}/dist/`);
      expect(dests, lib).toContain(`${lib}/`);
    }
    expect(runs(stageNamed(file, 'build')!).join('\n')).toContain(`tsc -b apps/${app}/tsconfig.json`);
  });

  it('writes nothing outside declared data paths (read-only root file system)', () => {
    const env = finalEnv(file);
    expect(env['NODE_ENV']).toBe('production');
    if (app === 'server') {
      expect(env['PERISCOPE_LISTEN_ADDRESS']).toBe('0.0.0.0');
      const data = env['PERISCOPE_DATA_DIR']!;
      expect(data).toMatch(/^\/var\/lib\//);
      expect(runs(file.final).join('\n')).toMatch(new RegExp(`install -d .*-o 1000 -g 1000 ${data}`));
      // the server serves the UI from ../../../web/dist relative to its compiled spa.js
      expect(copies(file.final).map((c) => c.dest)).toContain('apps/web/dist/');
    } else {
      expect(env['PERISCOPE_AGENT_LISTEN_ADDRESS']).toBe('0.0.0.0');
    }
  });
});

describe('docker/Dockerfile.shell', () => {
  const final = shell.final;
  const finalRuns = runs(final).join('\n');

  it('builds on debian:bookworm-slim', () => {
    expect(final.image).toMatch(/^debian:bookworm-slim@sha256:/);
  });

  it('installs kubectl and helm at pinned versions, verified by SHA-256 for each architecture', () => {
    const tools = stageNamed(shell, 'tools')!;
    const args = stageArgs(tools);
    expect(args['KUBECTL_VERSION']).toMatch(/^v1\.\d+\.\d+$/);
    expect(args['HELM_VERSION']).toMatch(/^v3\.\d+\.\d+$/);
    for (const key of [
      'KUBECTL_SHA256_AMD64',
      'KUBECTL_SHA256_ARM64',
      'HELM_SHA256_AMD64',
      'HELM_SHA256_ARM64',
    ])
      expect(args[key], key).toMatch(SHA256);
    const download = runs(tools).find((r) => r.includes('dl.k8s.io'))!;
    expect(download).toContain(
      'https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl',
    );
    expect(download).toContain('https://get.helm.sh/helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz');
    // exact text: sha256sum's check format needs the two spaces
    expect(shell.text).toContain('echo "${kubectl_sha256}  /tmp/kubectl" | sha256sum --check --strict');
    expect(shell.text).toContain('echo "${helm_sha256}  /tmp/helm.tar.gz" | sha256sum --check --strict');
    // verification comes before the files are used
    expect(download.indexOf('sha256sum --check')).toBeLessThan(
      download.indexOf('install -m 0755 /tmp/kubectl'),
    );
    expect(download.lastIndexOf('sha256sum --check')).toBeLessThan(download.indexOf('tar -xzf'));
    // an unknown architecture fails instead of skipping the check
    expect(download).toMatch(/\*\) echo "no pinned kubectl\/helm checksums .*exit 1/);
  });

  it('installs the packages of the guide and no vi/vim', () => {
    const install = finalRuns.match(/apt-get install[^&]*/)?.[0] ?? '';
    for (const pkg of layout.packages) expect(install.split(' '), pkg).toContain(pkg);
    for (const pkg of ['bash', 'nano', 'jq', 'coreutils', 'curl', 'ca-certificates'])
      expect(layout.packages).toContain(pkg);
    expect(install).not.toMatch(/\bvim?\b/);
  });

  it('ships the Node runtime the bundles start with', () => {
    expect(copies(final)).toContainEqual(
      expect.objectContaining({
        from: 'node-runtime',
        sources: ['/usr/local/bin/node'],
        dest: layout.runtime,
      }),
    );
    expect(stageNamed(shell, 'node-runtime')!.image).toMatch(/^node:\d+[\w.-]*@sha256:/);
    // `#!/usr/bin/env node` needs node on the PATH of bash --login (/etc/profile includes /usr/local/bin)
    expect(layout.runtime).toBe('/usr/local/bin/node');
  });

  it('builds the programs with the workspace build script', () => {
    const bundle = stageNamed(shell, 'bundle')!;
    expect(runs(bundle).join('\n')).toContain('npm run build --workspace @periscope/shell');
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'apps/shell/package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    expect(pkg.scripts['build']).toBe('tsx src/build/bundle.ts');
  });

  it('creates every file of the layout at its path and mode', () => {
    for (const file of layout.files) {
      const copy = copies(final).find((c) => c.dest === file.path);
      expect(copy, file.path).toBeDefined();
      expect(copy!.chmod).toBe(file.mode);
      if ('bundle' in file.from) {
        expect(copy!.from).toBe('bundle');
        expect(copy!.sources).toEqual([`/src/apps/shell/dist/${file.from.bundle}.js`]);
      } else if ('native' in file.from) {
        // Compiled for the target platform by the same script `npm run build` uses.
        expect(copy!.from).toBe(file.from.native);
        expect(copy!.sources).toEqual([`/out/${file.from.native}`]);
        expect(runs(stageNamed(shell, file.from.native)!).join('\n')).toMatch(
          new RegExp(`^sh apps/shell/src/[\\w-]+/build\\.sh /out/${file.from.native}$`, 'm'),
        );
      } else {
        expect(copy!.from).toBe('tools');
        expect(copy!.sources).toEqual([`/out/${posix.basename(file.path)}`]);
        expect(runs(stageNamed(shell, 'tools')!).join('\n')).toContain(`/out/${posix.basename(file.path)}`);
      }
    }
  });

  it('creates the tool symlinks to the wrapper', () => {
    for (const link of layout.symlinks) expect(finalRuns).toContain(`ln -s ${link.target} ${link.path}`);
  });

  it('creates every directory of the layout with its mode and owner', () => {
    for (const dir of layout.directories) {
      const owner =
        dir.owner === undefined ? '' : ` -o ${dir.owner.split(':')[0]} -g ${dir.owner.split(':')[1]}`;
      expect(finalRuns, dir.path).toMatch(
        new RegExp(
          `install -d -m ${dir.mode}${owner} (\\S+ )*${dir.path.replace(/[/.]/g, '\\$&')}( |$)`,
          'm',
        ),
      );
    }
  });

  it('sets the environment, user, working directory and entrypoint of the layout', () => {
    expect(finalEnv(shell)).toEqual(layout.env);
    expect(layout.env['KUBE_EDITOR']).toBe('nano');
    expect(lastOf(final, 'USER')).toBe(layout.user);
    expect(finalRuns).toContain(
      `useradd --uid ${layout.user.split(':')[0]} --gid ${layout.user.split(':')[1]} --home-dir ${layout.workdir}`,
    );
    expect(lastOf(final, 'WORKDIR')).toBe(layout.workdir);
    expect(execForm(lastOf(final, 'ENTRYPOINT')!)).toEqual(layout.entrypoint);
    expect(execForm(lastOf(final, 'CMD')!)).toEqual(layout.cmd);
  });

  it('checks the built image can run the wrapped tools', () => {
    expect(finalRuns).toContain('node --version');
    expect(finalRuns).toContain('kubectl version --client');
    expect(finalRuns).toContain('helm version --short');
  });
});

describe('paths the session pod, the charts and the programs rely on', () => {
  /** True when the image provides `path`: a file, symlink or directory of the layout, or inside one. */
  function provided(path: string): boolean {
    if (layout.files.some((f) => f.path === path) || layout.symlinks.some((l) => l.path === path))
      return true;
    if (path === layout.runtime || path === '/bin/bash') return true;
    return layout.directories.some((d) => path === d.path || path.startsWith(`${d.path}/`));
  }

  it('has what the pod spec mounts, runs and reads', () => {
    for (const path of [
      '/usr/local/bin/periscope-shell',
      '/usr/local/bin/periscope-audit-exec',
      '/usr/local/bin/kubectl',
      '/usr/local/bin/helm',
      '/opt/periscope/bin/kubectl-real',
      '/opt/periscope/bin/helm-real',
      '/etc/periscope',
      '/etc/periscope/kubeconfig',
      '/tmp/periscope-shell/audit.jsonl',
      '/bin/bash',
    ])
      expect(provided(path), path).toBe(true);
    expect(layout.directories.find((d) => d.path === '/etc/periscope')?.mountPoint).toBe(true);
  });

  it('has every shell image path the cluster-ops pod builder names', () => {
    const root = join(REPO_ROOT, 'libs/cluster-ops/src');
    const found = new Set<string>();
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir)) {
        const path = join(dir, entry);
        if (statSync(path).isDirectory()) walk(path);
        else if (entry.endsWith('.ts') && !entry.endsWith('.spec.ts'))
          for (const m of readFileSync(path, 'utf8').matchAll(
            /\/(?:etc\/periscope|opt\/periscope|tmp\/periscope-shell|usr\/local\/bin\/(?:periscope-[\w-]+|kubectl|helm))[\w./-]*/g,
          ))
            found.add(m[0].replace(/[.]$/, ''));
      }
    };
    if (existsSync(root)) walk(root);
    for (const path of found) expect(provided(path), path).toBe(true);
  });
});

describe('the charts and the images agree', () => {
  const chart = (path: string): string | undefined =>
    existsSync(join(REPO_ROOT, 'charts', path))
      ? readFileSync(join(REPO_ROOT, 'charts', path), 'utf8')
      : undefined;

  it('names the shell image repository of the layout', () => {
    const values = chart('periscope/values.yaml');
    if (values !== undefined) expect(values).toContain(`repository: ${layout.image}`);
  });

  it.each([
    ['periscope/templates/deployment.yaml', server],
    ['periscope-agent/templates/deployment.yaml', agent],
  ])('%s runs the image entrypoint on the exposed port', (template, file) => {
    const deployment = chart(template);
    if (deployment === undefined) return;
    // no command override: the image's ENTRYPOINT (node apps/<app>/dist/main.js) starts the app
    expect(deployment).not.toMatch(/^\s*command:/m);
    const exposed = lastOf(file.final, 'EXPOSE');
    expect(exposed).toMatch(/^\d+$/);
    if (file === server) {
      expect(deployment).toContain(`containerPort: ${exposed!}`);
      // the data directory is a volume at the path the image declares
      const data = finalEnv(server)['PERISCOPE_DATA_DIR']!;
      expect(deployment).toMatch(new RegExp(`name: PERISCOPE_DATA_DIR\\s+value: ${data}\\b`));
      expect(deployment).toContain(`mountPath: ${data}`);
    }
  });
});
