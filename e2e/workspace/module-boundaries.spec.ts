import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { ESLint } from 'eslint';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(__dirname, '../..');

// A cold type-aware lint builds the TypeScript program of the whole workspace: seconds on a quiet
// machine, far more on two cores shared with the rest of the suite. The one ESLint instance is
// created and warmed in `beforeAll`, under a deadline sized for that; each probe then only lints one
// small file, and still gets a deadline for a loaded machine.
const WARM_UP_TIMEOUT_MS = 5 * 60_000;
const PROBE_TIMEOUT_MS = 60_000;

/**
 * Proves the architecture rules bite: a probe file that crosses a boundary is written into a real
 * project folder, linted with the workspace config, and must fail with the Nx boundary rule.
 */
describe('module boundaries', { timeout: PROBE_TIMEOUT_MS }, () => {
  const probes: string[] = [];
  let eslint: ESLint;

  beforeAll(async () => {
    // The boundary rule reads the cached Nx project graph; build it as `npm run lint` does.
    execFileSync(join(root, 'node_modules/.bin/nx'), ['show', 'projects'], {
      cwd: root,
      env: { ...process.env, NX_DAEMON: 'false' },
      stdio: 'ignore',
    });
    eslint = new ESLint({ cwd: root });
    // Warm up: lint one real file of each project the probes land in, so the type-aware parser's
    // programs exist before any test's clock starts.
    await eslint.lintFiles([
      join(root, 'apps/web/src/format.ts'),
      join(root, 'apps/agent/src/version.ts'),
      join(root, 'libs/config/src/index.ts'),
    ]);
  }, WARM_UP_TIMEOUT_MS);

  afterAll(() => {
    for (const p of probes) rmSync(p, { force: true });
  });

  async function boundaryErrors(file: string, source: string): Promise<string[]> {
    const path = join(root, file);
    probes.push(path);
    writeFileSync(path, source);
    const [result] = await eslint.lintFiles([path]);
    return (result?.messages ?? [])
      .filter((m) => m.ruleId === '@nx/enforce-module-boundaries')
      .map((m) => m.message);
  }

  it('refuses a Node-only lib in the web app', async () => {
    const errors = await boundaryErrors(
      `apps/web/src/boundary-probe-${process.pid}.ts`,
      "import * as ops from '@periscope/cluster-ops';\nexport const probe = ops;\n",
    );
    expect(errors.join('\n')).toMatch(/platform:browser.*platform:isomorphic/s);
  });

  it('allows the isomorphic protocol lib in the web app', async () => {
    const errors = await boundaryErrors(
      `apps/web/src/boundary-probe-ok-${process.pid}.ts`,
      "import { ERROR_CODE } from '@periscope/protocol';\nexport const probe = ERROR_CODE;\n",
    );
    expect(errors).toEqual([]);
  });

  it('refuses server code in the agent', async () => {
    const errors = await boundaryErrors(
      `apps/agent/src/boundary-probe-${process.pid}.ts`,
      "import * as server from '@periscope/server';\nexport const probe = server;\n",
    );
    expect(errors.join('\n')).toContain('Imports of apps are forbidden');
  });

  it('refuses an app import in a lib', async () => {
    const errors = await boundaryErrors(
      `libs/config/src/boundary-probe-${process.pid}.ts`,
      "import * as shell from '@periscope/shell';\nexport const probe = shell;\n",
    );
    expect(errors.join('\n')).toContain('Imports of apps are forbidden');
  });
});
