import { readFileSync, writeFileSync } from 'node:fs';

import { replaceEnvTable, type EnvSpec } from './env-spec';

/**
 * For docs tests: the generated table `name` in `file` as it is, and as the definitions say it
 * should be. With PERISCOPE_UPDATE_DOCS=1 the file is rewritten first, so a test run refreshes it.
 */
export function envTableInDoc(
  file: string,
  name: string,
  spec: EnvSpec,
  update: boolean,
): { actual: string; expected: string } {
  const actual = readFileSync(file, 'utf8');
  const expected = replaceEnvTable(actual, name, spec);
  if (expected === undefined) throw new Error(`${file} has no <!-- env-table:${name}:start/end --> markers`);
  if (update && expected !== actual) {
    writeFileSync(file, expected);
    return { actual: expected, expected };
  }
  return { actual, expected };
}
