import { resolve } from 'node:path';

import { envTableInDoc } from '@periscope/config';
import { describe, expect, it } from 'vitest';

import { AGENT_ENV } from './agent-env';

describe('agent configuration reference', () => {
  it('docs/configuration.md matches the definitions (refresh: PERISCOPE_UPDATE_DOCS=1 npx vitest run config-docs)', () => {
    const file = resolve(__dirname, '../../../../docs/configuration.md');
    const { actual, expected } = envTableInDoc(
      file,
      'agent',
      AGENT_ENV,
      process.env['PERISCOPE_UPDATE_DOCS'] === '1',
    );
    expect(actual).toBe(expected);
  });
});
