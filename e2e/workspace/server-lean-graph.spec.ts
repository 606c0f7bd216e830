import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { isListed, loadedPackages, REPO_ROOT as ROOT } from '../support/module-graph';

/**
 * Packages the server must not load at start: each is loaded on first use by the cluster or the
 * setting that needs it (docs/benchmarks.md, "A leaner server"). `@kubernetes/client-node` (≈ 26 MiB
 * of heap): direct clusters make raw calls (LeanKubeConfig); shell provisioning and a CA kept in a
 * Secret load it (`clientNode()`). The AWS SDK: an eks cluster's first call. ioredis and pg: the
 * Redis shared state and the Postgres audit store. A prefix ending in `/` is a scope.
 */
const HEAVY = ['@kubernetes/client-node', '@aws-sdk/', '@smithy/', 'ioredis', 'pg'];
const isHeavy = (pkg: string): boolean => isListed(HEAVY, pkg);

const freePort = (): Promise<number> =>
  new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => {
        res(typeof a === 'object' && a !== null ? a.port : 0);
      });
    });
  });

/**
 * Compiles the server's TypeScript on the fly with SWC (decorator metadata, as the build and the
 * tests do; esbuild would drop it) and maps `@periscope/<lib>` to the libraries' sources, so the
 * process runs exactly the files of this checkout. On SIGUSR2, writes the npm packages in the
 * CommonJS cache to `out` and exits.
 */
const HOOK = (out: string): string => `
const Module = require('node:module');
const fs = require('node:fs');
const path = require('node:path');
const root = ${JSON.stringify(ROOT)};
const swc = require(require.resolve('@swc/core', { paths: [root] }));
const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  const m = /^@periscope\\/([^/]+)(?:\\/dist\\/(.+))?$/.exec(request);
  if (m) {
    const base = path.join(root, 'libs', m[1], 'src', m[2] || 'index');
    for (const f of [base + '.ts', path.join(base, 'index.ts')]) if (fs.existsSync(f)) return f;
  }
  return resolveFilename.call(this, request, parent, ...rest);
};
require.extensions['.ts'] = (module, filename) => {
  const { code } = swc.transformSync(fs.readFileSync(filename, 'utf8'), {
    filename,
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
      target: 'es2022',
    },
    module: { type: 'commonjs' },
  });
  module._compile(code, filename);
};
process.on('SIGUSR2', () => {
  const pkgs = new Set();
  for (const f of Object.keys(require.cache)) {
    const i = f.lastIndexOf('/node_modules/');
    if (i < 0) continue;
    const p = f.slice(i + 14).split('/');
    pkgs.add(p[0].startsWith('@') ? p[0] + '/' + p[1] : p[0]);
  }
  fs.writeFileSync(${JSON.stringify(out)}, JSON.stringify([...pkgs]));
  process.exit(0);
});
`;

async function poll<T>(
  what: string,
  deadlineMs: number,
  probe: () => Promise<T | undefined>,
  fatal: () => void = () => undefined,
): Promise<T> {
  const until = Date.now() + deadlineMs;
  let last = '';
  for (;;) {
    fatal(); // throws at once when waiting longer cannot help
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > until) throw new Error(`${what}: no answer within ${deadlineMs} ms (${last})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('the server module graph', () => {
  it('imports neither @kubernetes/client-node, the AWS SDK, ioredis nor pg at start', () => {
    const packages = loadedPackages(join(ROOT, 'apps/server/src/main.ts'));
    // the walk sees the server's real dependencies (a broken walk would pass vacuously)
    expect([...packages.keys()]).toEqual(
      expect.arrayContaining([
        '@nestjs/core',
        'socket.io',
        'ws',
        'yaml',
        'prom-client',
        'nestjs-pino',
        'express',
      ]),
    );
    const heavy = [...packages].filter(([p]) => isHeavy(p));
    expect(heavy.map(([p, chain]) => `${p} via ${chain.join(' → ')}`)).toEqual([]);
  });

  it('does not load them in a real server with a direct and an eks cluster, the shell check and a pod list done', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'server-graph-'));
    const out = join(dir, 'packages.json');
    const [port, metricsPort] = [await freePort(), await freePort()];
    // The direct cluster's "apiserver": it takes connections and drops them, so every call fails
    // fast after being made; a connection shows that a call was made (and what it loads, loaded).
    let connections = 0;
    const apiserver = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => apiserver.listen(0, '127.0.0.1', r));
    const apiPort = (apiserver.address() as { port: number }).port;
    writeFileSync(join(dir, 'hook.js'), HOOK(out));
    writeFileSync(
      join(dir, 'auth.yaml'),
      [
        'authorization: {mode: tier, groupTiers: {admins: admin}}',
        'dev: {users: [{subject: alice, email: alice@example.com, groups: [admins]}]}',
      ].join('\n'),
    );
    mkdirSync(join(dir, 'web'));
    writeFileSync(join(dir, 'web/index.html'), '<!doctype html><title>Periscope</title>');
    writeFileSync(
      join(dir, 'kubeconfig'),
      [
        'apiVersion: v1',
        'kind: Config',
        `clusters: [{name: c, cluster: {server: "https://127.0.0.1:${apiPort}"}}]`,
        'users: [{name: u, user: {token: graph-probe}}]',
        'contexts: [{name: x, context: {cluster: c, user: u}}]',
        'current-context: x',
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'clusters.yaml'),
      [
        'clusters:',
        `  - {name: direct, backend: kubeconfig, kubeconfigPath: ${join(dir, 'kubeconfig')}}`,
        // not asked at start (its shell is off): the AWS SDK stays unloaded until it is used
        '  - name: aws',
        '    backend: eks',
        '    arn: arn:aws:eks:eu-west-1:123456789012:cluster/prod',
        '    region: eu-west-1',
        '    clusterShell: {enabled: false}',
      ].join('\n'),
    );
    const child = spawn(
      process.execPath,
      ['-r', join(dir, 'hook.js'), join(ROOT, 'apps/server/src/main.ts')],
      {
        cwd: join(ROOT, 'apps/server'),
        env: {
          PATH: process.env['PATH'] ?? '',
          HOME: dir,
          PERISCOPE_AUTH_MODE: 'dev',
          PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
          PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
          PERISCOPE_CLUSTER_SHELL_ENABLED: 'true',
          PERISCOPE_CLUSTER_SHELL_IMAGE: 'example.com/periscope-shell:0.1.0',
          PERISCOPE_HTTP_PORT: String(port),
          PERISCOPE_LISTEN_ADDRESS: '127.0.0.1',
          PERISCOPE_METRICS_PORT: String(metricsPort),
          PERISCOPE_PUBLIC_URL: `http://localhost:${port}`,
          PERISCOPE_DATA_DIR: join(dir, 'data'),
          PERISCOPE_WEB_DIR: join(dir, 'web'),
          PERISCOPE_LOG_LEVEL: 'fatal',
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 8192) stderr += b.toString();
    });
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    try {
      const alive = (): void => {
        if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}): ${stderr}`);
      };
      await poll(
        'the server to be ready',
        90_000,
        async () => ((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).ok ? true : undefined),
        alive,
      );
      const base = `http://127.0.0.1:${port}`;
      const login = await fetch(`${base}/api/auth/dev-login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ subject: 'alice' }),
      });
      expect(login.status, await login.clone().text()).toBe(204);
      const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
      // the shell-RBAC check of the direct cluster, at start: SelfSubjectReview and RulesReview
      await poll(
        'the shell check to call the apiserver',
        30_000,
        () => Promise.resolve(connections >= 2 ? true : undefined),
        alive,
      );
      const clusters = await fetch(`${base}/api/clusters`, { headers: { cookie } });
      const listed = (await clusters.json()) as { clusters: { name: string }[] };
      expect(listed.clusters.map((c) => c.name)).toEqual(['direct', 'aws']);
      // a pod list on the direct cluster, which fails at the dropped connection
      const before = connections;
      const pods = await fetch(`${base}/api/clusters/direct/pods`, { headers: { cookie } });
      expect(pods.status).toBeGreaterThanOrEqual(500);
      expect(connections).toBeGreaterThan(before);
      alive();
      child.kill('SIGUSR2');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
      const packages = JSON.parse(readFileSync(out, 'utf8')) as string[];
      // what the server does load (a broken probe would pass vacuously)
      expect(packages).toEqual(
        expect.arrayContaining(['@nestjs/core', 'express', 'socket.io', 'pino', 'prom-client', 'yaml', 'ws']),
      );
      expect(packages.filter(isHeavy)).toEqual([]);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      apiserver.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);
});
