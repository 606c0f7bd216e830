import { rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { ESLint } from 'eslint';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(__dirname, '../..');

// A cold type-aware lint of the web project: seconds on a quiet machine, far more on a busy one.
const LINT_TIMEOUT_MS = 5 * 60_000;

/**
 * Proves the Rules of React bite in the web app: a component breaking them is written into
 * apps/web/src, linted with the workspace config, and must fail with the react-hooks rules.
 */
describe('React hooks lint', { timeout: LINT_TIMEOUT_MS }, () => {
  const probe = join(root, `apps/web/src/hooks-probe-${process.pid}.tsx`);
  afterAll(() => {
    rmSync(probe, { force: true });
  });

  it('refuses a conditional hook and state set straight from an effect', async () => {
    writeFileSync(
      probe,
      [
        "import { useEffect, useState } from 'react';",
        '',
        'export function Probe({ on }: { on: boolean }): number {',
        '  if (!on) return 0;',
        '  const [n, setN] = useState(1);',
        '  useEffect(() => {',
        '    setN(2);',
        '  }, []);',
        '  return n;',
        '}',
        '',
      ].join('\n'),
    );
    const [result] = await new ESLint({ cwd: root }).lintFiles([probe]);
    const rules = (result?.messages ?? []).map((m) => m.ruleId);
    expect(rules).toContain('react-hooks/rules-of-hooks');
    expect(rules).toContain('react-hooks/set-state-in-effect');
  });

  it('applies to the web app only', async () => {
    const eslint = new ESLint({ cwd: root });
    const web = (await eslint.calculateConfigForFile(join(root, 'apps/web/src/app.tsx'))) as {
      rules: Record<string, unknown>;
    };
    const server = (await eslint.calculateConfigForFile(join(root, 'apps/server/src/main.ts'))) as {
      rules: Record<string, unknown>;
    };
    expect(web.rules['react-hooks/rules-of-hooks']).toEqual([2]);
    expect(server.rules['react-hooks/rules-of-hooks']).toBeUndefined();
  });
});
