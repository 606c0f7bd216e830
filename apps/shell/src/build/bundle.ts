/**
 * Bundles the two programs of the shell image into single CommonJS files with a node shebang:
 * `dist/periscope-shell.js` and `dist/periscope-audit-exec.js` (`npm run build -w @periscope/shell`).
 * Tests call {@link bundleShellPrograms} with their own output directory, so they run exactly
 * what the image ships.
 */
import { chmodSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { build } from 'esbuild';

/** apps/shell, from src/build (tsx) or dist/build (compiled). */
const PACKAGE_ROOT = resolve(__dirname, '..', '..');

export const SHELL_PROGRAMS = {
  'periscope-shell': 'src/shell/main.ts',
  'periscope-audit-exec': 'src/audit-exec/main.ts',
} as const;
export type ShellProgram = keyof typeof SHELL_PROGRAMS;

/** Oldest runtime the bundles must start on (Debian bookworm's nodejs); the image ships Node 24. */
export const BUNDLE_TARGET = 'node18';

export async function bundleShellPrograms(outDir: string): Promise<Record<ShellProgram, string>> {
  const entryPoints = Object.fromEntries(
    Object.entries(SHELL_PROGRAMS).map(([name, entry]) => [name, join(PACKAGE_ROOT, entry)]),
  );
  await build({
    entryPoints,
    outdir: outDir,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: BUNDLE_TARGET,
    banner: { js: '#!/usr/bin/env node' },
    legalComments: 'none',
    logLevel: 'warning',
  });
  const out = {} as Record<ShellProgram, string>;
  for (const name of Object.keys(SHELL_PROGRAMS) as ShellProgram[]) {
    out[name] = join(outDir, `${name}.js`);
    chmodSync(out[name], 0o755);
  }
  return out;
}

if (require.main === module) {
  const outDir = process.argv[2] ?? join(PACKAGE_ROOT, 'dist');
  bundleShellPrograms(outDir)
    .then((files) => {
      for (const file of Object.values(files)) console.log(file);
    })
    .catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
}
