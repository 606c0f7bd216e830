import { spawnSync } from 'node:child_process';

import { describe, expect, it } from 'vitest';

/** Runs `script` in a fresh Node process (with tsx, for the TypeScript module); answers its stdout lines. */
function node(script: string): string[] {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], {
    cwd: __dirname,
    encoding: 'utf8',
    timeout: 30_000,
  });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout.trim().split('\n');
}

describe('deferring packages the agent never uses', () => {
  it('keeps libphonenumber-js out of a process that loads class-validator, and loads it when used', () => {
    const lines = node(`
      require(${JSON.stringify(require.resolve('./defer-unused.ts'))});
      const realFiles = () => Object.entries(require.cache).filter(([f, m]) =>
        f.includes('/libphonenumber-js/') && !require('node:util').types.isProxy(m.exports)).length;
      const cv = require('class-validator');
      console.log('before use', realFiles());
      console.log('valid', cv.isPhoneNumber('+41 44 668 18 00'), cv.isPhoneNumber('+1 nope'), cv.isPhoneNumber('044 668 18 00', 'CH'));
      console.log('after use', realFiles() > 0);
    `);
    expect(lines).toEqual(['before use 0', 'valid true false true', 'after use true']);
  });

  it('changes nothing for a module already loaded or not resolvable', () => {
    const lines = node(`
      const { deferModule } = require(${JSON.stringify(require.resolve('./defer-unused.ts'))});
      console.log(deferModule('libphonenumber-js/max', 'class-validator'), deferModule('no-such-package', 'class-validator'));
    `);
    // defer-unused.ts deferred it when it was loaded: the second call finds it in the cache
    expect(lines).toEqual(['false false']);
  });
});
