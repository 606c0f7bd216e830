/**
 * The shell image's filesystem contract (`docker/shell-image.json`), read by both the static
 * Dockerfile check and the integration test: the test assembles exactly this layout as the local
 * node's image overlay, and the check proves `docker/Dockerfile.shell` builds the same layout.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  linkSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  symlinkSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export const REPO_ROOT = resolve(__dirname, '../..');

export interface ShellImageLayout {
  image: string;
  user: string;
  workdir: string;
  entrypoint: string[];
  cmd: string[];
  env: Record<string, string>;
  packages: string[];
  runtime: string;
  files: { path: string; from: { bundle: string } | { native: string } | { tool: string }; mode: string }[];
  symlinks: { path: string; target: string }[];
  directories: { path: string; mode: string; owner?: string; mountPoint?: boolean }[];
}

export function readShellImageLayout(): ShellImageLayout {
  return JSON.parse(readFileSync(join(REPO_ROOT, 'docker/shell-image.json'), 'utf8')) as ShellImageLayout;
}

/**
 * Builds periscope-shell (a JS bundle) and periscope-audit-exec (native) with the same script
 * `npm run build` uses; keyed by program name.
 */
export function bundleShellPrograms(outDir: string): Record<string, string> {
  const out = execFileSync(
    join(REPO_ROOT, 'node_modules/.bin/tsx'),
    [join(REPO_ROOT, 'apps/shell/src/build/bundle.ts'), outDir],
    { encoding: 'utf8', cwd: REPO_ROOT },
  );
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((file) => [/([^/]+?)(\.js)?$/.exec(file)?.[1] ?? file, file]),
  );
}

/**
 * Lays the image's files out under `root` as they are in the image: the bundles and the real
 * kubectl/helm at their paths, the tool symlinks, the directories. Mount points (the Secret at
 * /etc/periscope, the audit directory under /tmp) are left to the pod, as in a cluster.
 */
export function assembleOverlay(
  root: string,
  layout: ShellImageLayout,
  sources: { bundles: Record<string, string>; tools: Record<string, string> },
): void {
  const at = (path: string): string => join(root, path);
  for (const dir of layout.directories) {
    if (dir.mountPoint === true) continue;
    mkdirSync(at(dir.path), { recursive: true, mode: Number.parseInt(dir.mode, 8) });
  }
  for (const file of layout.files) {
    const from = file.from;
    const named =
      'bundle' in from
        ? sources.bundles[from.bundle]
        : 'native' in from
          ? sources.bundles[from.native]
          : sources.tools[from.tool];
    if (named === undefined) throw new Error(`no source for ${file.path}`);
    // The image holds regular files (the binary cache holds symlinks into a private home).
    const source = realpathSync(named);
    mkdirSync(dirname(at(file.path)), { recursive: true });
    try {
      linkSync(source, at(file.path)); // large binaries: a hard link when on the same file system
    } catch {
      copyFileSync(source, at(file.path));
    }
    chmodSync(at(file.path), Number.parseInt(file.mode, 8));
  }
  for (const link of layout.symlinks) {
    mkdirSync(dirname(at(link.path)), { recursive: true });
    symlinkSync(link.target, at(link.path));
  }
}
