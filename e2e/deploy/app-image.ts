/**
 * The server and agent images as the local node can run them: a directory overlay holding what
 * the Dockerfile's final stage copies (read from `docker/Dockerfile.server` / `.agent`), taken from
 * this checkout's build output, plus the image config the Dockerfile declares (ENTRYPOINT, ENV,
 * WORKDIR). The Node.js runtime is the host's (`node` on the host PATH, which the sandbox sees).
 *
 * node_modules is hard-linked from the checkout (same file system; copied otherwise) and the
 * build output copied, so assembling takes a second or two.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';

import type { ImageConfig } from '../k8s/cluster';
import { copies, execForm, readDockerfile, stageNamed, runs } from '../shell/dockerfile';
import { REPO_ROOT } from '../shell/image-layout';

export interface AppImage {
  /** directory to map the image to (`imageMap`) */
  overlay: string;
  config: ImageConfig;
  /** COPY sources that were not built in this checkout (left out of the overlay) */
  missing: string[];
}

/** `ENV A=1 B=2` (the only form the Dockerfiles use). */
function envPairs(args: string): string[] {
  return args.split(' ').filter((w) => w.includes('='));
}

/**
 * Copies a file or directory tree; `hardLink` links files instead (node_modules: 25k files, never
 * rewritten in place). Build output is copied, so a rebuild during a run does not change the image.
 */
function copyTree(from: string, to: string, hardLink = false): void {
  mkdirSync(dirname(to), { recursive: true });
  if (statSync(from).isDirectory()) {
    // -a keeps symlinks (node_modules/@periscope/* → ../../libs/*) and modes; -l hard-links files.
    try {
      execFileSync('cp', [hardLink ? '-al' : '-a', `${from}/.`, to], { stdio: 'pipe' });
    } catch {
      execFileSync('cp', ['-a', `${from}/.`, to], { stdio: 'pipe' });
    }
    return;
  }
  copyFileSync(from, to);
}

/**
 * Lays out the final stage of `dockerfile` under `<root>/<WORKDIR>`: `COPY --from=<build stage>
 * /src/<path> <dest>` takes `<path>` from the checkout; a copy from the production-dependencies
 * stage (`npm ci --omit=dev`) takes the checkout's root manifests and `node_modules` (which also
 * holds development packages: the image would not).
 */
export function assembleAppImage(dockerfilePath: string, root: string): AppImage {
  const file = readDockerfile(dockerfilePath);
  const stage = file.final;
  let workdir = '/';
  const env: string[] = [];
  let entrypoint: string[] = [];
  let cmd: string[] | undefined;
  const missing: string[] = [];
  for (const i of stage.instructions) {
    switch (i.keyword) {
      case 'WORKDIR':
        workdir = posix.resolve(workdir, i.args);
        break;
      case 'ENV':
        env.push(...envPairs(i.args));
        break;
      case 'ENTRYPOINT':
        entrypoint = execForm(i.args);
        break;
      case 'CMD':
        cmd = execForm(i.args);
        break;
      case 'COPY': {
        const [c] = copies({ ...stage, instructions: [i] });
        if (c === undefined || c.from === undefined)
          throw new Error(`${dockerfilePath}: COPY without --from is not supported here: ${i.args}`);
        const from = stageNamed(file, c.from);
        if (from === undefined) throw new Error(`${dockerfilePath}: no stage ${c.from}`);
        const dest = posix.resolve(workdir, c.dest);
        const prodDeps = runs(from).some((r) => /npm ci .*--omit=dev/.test(r));
        for (const src of c.sources) {
          const rel = posix.relative('/src', src.replace(/\/$/, '') || '/');
          if (rel.startsWith('..')) throw new Error(`${dockerfilePath}: COPY source outside /src: ${src}`);
          if (prodDeps && rel === '') {
            for (const name of ['package.json', 'package-lock.json', 'node_modules'])
              copyTree(join(REPO_ROOT, name), join(root, dest, name), name === 'node_modules');
            continue;
          }
          const host = join(REPO_ROOT, rel);
          // `COPY a/ b/` copies the contents of a into b; `COPY a/file dir/` keeps the name.
          const target =
            c.dest.endsWith('/') && !src.endsWith('/')
              ? join(root, dest, posix.basename(rel))
              : join(root, dest);
          if (!existsSync(host)) {
            missing.push(rel);
            continue;
          }
          copyTree(host, target);
        }
        break;
      }
      default:
        break;
    }
  }
  return {
    overlay: root,
    config: { Entrypoint: entrypoint, ...(cmd ? { Cmd: cmd } : {}), Env: env, WorkingDir: workdir },
    missing,
  };
}
