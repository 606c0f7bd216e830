import { resolve } from 'node:path';

import { envTableInDoc } from '@periscope/config';
import { describe, expect, it } from 'vitest';

import { SERVER_ENV } from './server-env';

const root = resolve(__dirname, '../../../..');
const update = process.env['PERISCOPE_UPDATE_DOCS'] === '1';

describe('server configuration reference', () => {
  it.each(['README.md', 'docs/configuration.md'])(
    '%s matches the definitions (refresh: PERISCOPE_UPDATE_DOCS=1 npx vitest run config-docs)',
    (file) => {
      const { actual, expected } = envTableInDoc(resolve(root, file), 'server', SERVER_ENV, update);
      expect(actual).toBe(expected);
    },
  );

  it('documents every variable of the operator guide', () => {
    const { actual } = envTableInDoc(resolve(root, 'README.md'), 'server', SERVER_ENV, false);
    const guide = [
      'ENABLED',
      'MODE',
      'TIERS',
      'NAMESPACE',
      'IDLE_SECONDS',
      'POD_START_TIMEOUT_SECONDS',
      'TRANSCRIPT_MAX_BYTES',
    ];
    guide.push('MAX_SESSIONS_PER_USER', 'MAX_SESSIONS_TOTAL', 'IMAGE', 'IMAGE_PULL_POLICY');
    for (const v of guide) expect(actual).toContain(`| \`PERISCOPE_CLUSTER_SHELL_${v}\` |`);
  });
});
