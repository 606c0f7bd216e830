/**
 * Builds the two programs of the shell image (`npm run build -w @periscope/shell`):
 * - `dist/periscope-shell.js`: TypeScript bundled by esbuild into one CommonJS file with a node
 *   shebang;
 * - `dist/periscope-audit-exec`: the audit wrapper, one C file compiled by
 *   `src/audit-exec/build.sh` (it runs before every kubectl call, so it must not pay a Node
 *   start-up; docs/benchmarks.md, "Audit wrapper").
 * Tests call {@link bundleShellPrograms} with their own output directory, so they run exactly
 * what the image ships. `--only <program>` builds one (the image builds each in its own stage).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { build } from 'esbuild';

/** apps/shell, from src/build (tsx) or dist/build (compiled). */
const PACKAGE_ROOT = resolve(__dirname, '..', '..');

export const SHELL_PROGRAMS = {
  'periscope-shell': { kind: 'bundle', entry: 'src/shell/main.ts' },
  'periscope-audit-exec': { kind: 'native', entry: 'src/audit-exec/build.sh' },
} as const;
export type ShellProgram = keyof typeof SHELL_PROGRAMS;

/** Oldest runtime the bundles must start on (Debian bookworm's nodejs); the image ships Node 24. */
export const BUNDLE_TARGET = 'node18';

const isShellProgram = (name: string): name is ShellProgram => Object.hasOwn(SHELL_PROGRAMS, name);

export async function bundleShellPrograms(
  outDir: string,
  only: readonly ShellProgram[] = Object.keys(SHELL_PROGRAMS) as ShellProgram[],
): Promise<Partial<Record<ShellProgram, string>>> {
  const out: Partial<Record<ShellProgram, string>> = {};
  for (const name of only) {
    const program = SHELL_PROGRAMS[name];
    switch (program.kind) {
      case 'bundle':
        await build({
          entryPoints: { [name]: join(PACKAGE_ROOT, program.entry) },
          outdir: outDir,
          bundle: true,
          platform: 'node',
          format: 'cjs',
          target: BUNDLE_TARGET,
          banner: { js: '#!/usr/bin/env node' },
          legalComments: 'none',
          logLevel: 'warning',
        });
        out[name] = join(outDir, `${name}.js`);
        chmodSync(out[name], 0o755);
        break;
      case 'native':
        out[name] = join(outDir, name);
        // The compiler's output goes to stderr: stdout lists the built files.
        execFileSync('sh', [join(PACKAGE_ROOT, program.entry), out[name]], { stdio: ['ignore', 2, 2] });
        break;
    }
  }
  return out;
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const onlyAt = args.indexOf('--only');
  const only = onlyAt >= 0 ? args.splice(onlyAt, 2)[1] : undefined;
  if (only !== undefined && !isShellProgram(only)) {
    console.error(
      `unknown program ${JSON.stringify(only)} (known: ${Object.keys(SHELL_PROGRAMS).join(', ')})`,
    );
    process.exit(64);
  }
  const outDir = args[0] ?? join(PACKAGE_ROOT, 'dist');
  bundleShellPrograms(outDir, only !== undefined ? [only] : undefined)
    .then((files) => {
      for (const file of Object.values(files)) console.log(file);
    })
    .catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
}
