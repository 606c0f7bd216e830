/**
 * The production-dependencies cache key of `npm run images` (e2e/images/build.ts): the lock file
 * entries that `npm ci --omit=dev --workspace <ws>` installs, and nothing else, so editing a
 * script, another workspace or a dev dependency does not rebuild the server's `node_modules`.
 * (images.int.spec.ts checks the same set against the `node_modules/.package-lock.json` npm
 * really wrote into each image.)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { REPO_ROOT } from '../shell/image-layout';
import { formatDuration, productionClosure } from './build';

const lock = {
  packages: {
    '': { name: 'root', devDependencies: { vitest: '1' } },
    'apps/server': {
      name: '@x/server',
      dependencies: { a: '1', '@x/lib': '1' },
      devDependencies: { vitest: '1' },
      peerDependencies: { absent: '1' },
    },
    'apps/web': { name: '@x/web', dependencies: { react: '1' } },
    'libs/lib': { name: '@x/lib', dependencies: { b: '1' } },
    'node_modules/@x/server': { resolved: 'apps/server', link: true },
    'node_modules/@x/lib': { resolved: 'libs/lib', link: true },
    'node_modules/@x/web': { resolved: 'apps/web', link: true },
    'node_modules/a': { version: '1.0.0', dependencies: { b: '2' }, optionalDependencies: { fsevents: '2' } },
    // a's own b (2.x) is nested; the lib's b (1.x) is hoisted
    'node_modules/a/node_modules/b': { version: '2.0.0', dependencies: { c: '1' } },
    'node_modules/b': { version: '1.0.0' },
    'node_modules/c': { version: '1.0.0' },
    'node_modules/react': { version: '19.0.0' },
    'node_modules/vitest': { version: '4.0.0', dev: true },
  },
};

describe('productionClosure', () => {
  it('follows dependencies, workspace links, nested and hoisted copies; skips dev and other workspaces', () => {
    expect(Object.keys(productionClosure(lock, '@x/server')).sort()).toEqual([
      'apps/server',
      'libs/lib',
      'node_modules/@x/lib',
      'node_modules/@x/server',
      'node_modules/a',
      'node_modules/a/node_modules/b',
      'node_modules/b',
      'node_modules/c',
    ]);
  });

  it('keeps the entries themselves, so a version or integrity change changes the key', () => {
    const closure = productionClosure(lock, '@x/server');
    expect(closure['node_modules/a/node_modules/b']).toEqual({ version: '2.0.0', dependencies: { c: '1' } });
  });

  it('says what to do when the lock file lacks a dependency or the workspace', () => {
    const broken = {
      packages: Object.fromEntries(Object.entries(lock.packages).filter(([p]) => p !== 'node_modules/c')),
    };
    expect(() => productionClosure(broken, '@x/server')).toThrow(
      'c (needed by node_modules/a/node_modules/b) is not in the lock file; run npm install',
    );
    expect(() => productionClosure(lock, '@x/nope')).toThrow(
      'package-lock.json has no workspace named @x/nope',
    );
  });

  it("on this repository's lock file: the server's closure has its runtime dependencies and no dev tools", () => {
    const real = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as Parameters<
      typeof productionClosure
    >[0];
    const server = Object.keys(productionClosure(real, '@periscope/server'));
    for (const p of [
      'apps/server',
      'libs/protocol',
      'node_modules/better-sqlite3',
      'node_modules/@nestjs/core',
    ])
      expect(server).toContain(p);
    for (const p of [
      'node_modules/vitest',
      'node_modules/typescript',
      'apps/web',
      'node_modules/@periscope/web',
    ])
      expect(server).not.toContain(p);
    const agent = Object.keys(productionClosure(real, '@periscope/agent'));
    expect(agent).toContain('apps/agent');
    expect(agent).not.toContain('apps/server');
  });
});

describe('formatDuration', () => {
  it.each([
    [4.26, '4.3s'],
    [59.9, '59.9s'],
    [60, '1m00s'],
    [192.4, '3m12s'],
    [119.6, '2m00s'],
    [59.96, '1m00s'],
  ])('%s s → %s', (secs, text) => {
    expect(formatDuration(secs)).toBe(text);
  });
});
