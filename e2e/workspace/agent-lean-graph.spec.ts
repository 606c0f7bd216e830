import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { isListed, loadedPackages, REPO_ROOT as ROOT } from '../support/module-graph';

/**
 * Packages the agent must not load at start: heavy ones it loads on first use where it needs
 * them, and the framework it no longer uses (NestJS and Express, ≈ 9 MiB of heap for three GET
 * routes; docs/benchmarks.md, "A lean agent"). A prefix ending in `/` is a scope.
 */
const HEAVY = [
  '@kubernetes/client-node',
  '@aws-sdk/',
  '@smithy/',
  '@peculiar/x509',
  '@nestjs/',
  'nestjs-pino',
  'express',
  'body-parser',
  'rxjs',
];
/** Loaded by dependencies at start although the agent never uses them: deferred (defer-unused.ts). */
const DEFERRED = ['libphonenumber-js'];
const isHeavy = (pkg: string): boolean => isListed(HEAVY, pkg);

/** The npm packages a real agent process has loaded when it exits, by what it was given. */
function packagesAtExit(env: Record<string, string>): {
  status: number | null;
  packages: string[];
  stderr: string;
} {
  const dir = mkdtempSync(join(tmpdir(), 'agent-graph-'));
  try {
    const out = join(dir, 'packages.json');
    const hook = join(dir, 'hook.js');
    // Every file in the CommonJS cache under node_modules, as its package name; stand-ins
    // (defer-unused.ts) are not loaded modules and are left out.
    writeFileSync(
      hook,
      `process.on('exit', () => {
        const pkgs = new Set();
        for (const [f, m] of Object.entries(require.cache)) {
          const i = f.lastIndexOf('/node_modules/');
          if (i < 0 || (m && m.exports && require('node:util').types.isProxy(m.exports))) continue;
          const p = f.slice(i + 14).split('/');
          pkgs.add(p[0].startsWith('@') ? p[0] + '/' + p[1] : p[0]);
        }
        require('node:fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify([...pkgs]));
      });`,
    );
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '-r', hook, join(ROOT, 'apps/agent/src/main.ts')],
      {
        cwd: join(ROOT, 'apps/agent'),
        env: { PATH: process.env['PATH'] ?? '', KUBECONFIG: join(dir, 'missing-kubeconfig'), ...env },
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    const packages = existsSync(out) ? (JSON.parse(readFileSync(out, 'utf8')) as string[]) : [];
    return {
      status: r.status,
      packages: packages.filter((p) => !['tsx', 'esbuild', 'get-tsconfig', 'resolve-pkg-maps'].includes(p)),
      stderr: r.stderr,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the agent module graph', () => {
  it('imports neither NestJS, Express, @kubernetes/client-node, the AWS SDK nor @peculiar/x509 at start', () => {
    const packages = loadedPackages(join(ROOT, 'apps/agent/src/main.ts'));
    // the walk sees the agent's real dependencies (a broken walk would pass vacuously)
    expect([...packages.keys()]).toEqual(
      expect.arrayContaining(['socket.io-client', 'ws', 'yaml', 'pino', 'pino-http', 'prom-client']),
    );
    const heavy = [...packages].filter(([p]) => isHeavy(p));
    expect(heavy.map(([p, chain]) => `${p} via ${chain.join(' → ')}`)).toEqual([]);
  });

  it('does not load them, nor what its dependencies would load for nothing, in a real agent process', () => {
    // Up to the first cluster call (the kubeconfig is missing): the whole app built, its
    // logger, metrics and listener included, then exit 1.
    const started = packagesAtExit({
      PERISCOPE_SERVER_URL: 'https://127.0.0.1:1',
      PERISCOPE_CLUSTER_NAME: 'graph-probe',
      PERISCOPE_AGENT_HEALTH_PORT: '1',
      PERISCOPE_LOG_LEVEL: 'fatal',
    });
    expect(started.stderr).toContain('fix KUBECONFIG');
    expect(started.status).toBe(1);
    // what the agent does load (a broken probe would pass vacuously)
    expect(started.packages).toEqual(
      expect.arrayContaining([
        'socket.io-client',
        'pino',
        'pino-http',
        'prom-client',
        'class-validator',
        'yaml',
      ]),
    );
    expect(started.packages.filter(isHeavy)).toEqual([]);
    expect(started.packages.filter((p) => DEFERRED.includes(p))).toEqual([]);
  });
});
