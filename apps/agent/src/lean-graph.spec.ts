import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '../../..');
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
const isHeavy = (pkg: string): boolean =>
  HEAVY.some((h) => (h.endsWith('/') ? pkg.startsWith(h) : pkg === h || pkg.startsWith(`${h}/`)));

/** A workspace import to its source file; undefined for an npm package. */
function toSource(from: string, spec: string): string | undefined {
  let base: string | undefined;
  if (spec.startsWith('.')) base = resolve(dirname(from), spec);
  else if (spec.startsWith('@periscope/')) {
    // `@periscope/<lib>/dist/<module>`: one module of a library, e.g. without its NestJS parts
    const deep = /^@periscope\/([^/]+)\/dist\/(.+)$/.exec(spec);
    if (deep?.[1] !== undefined && deep[2] !== undefined) base = join(ROOT, 'libs', deep[1], 'src', deep[2]);
  }
  if (base === undefined) {
    const m = /^@periscope\/([^/]+)$/.exec(spec);
    if (m?.[1] !== undefined) base = join(ROOT, 'libs', m[1], 'src/index');
  }
  if (base === undefined) return undefined;
  for (const f of [`${base}.ts`, join(base, 'index.ts')]) if (existsSync(f)) return f;
  throw new Error(`cannot resolve ${spec} from ${from}`);
}

/** Module specifiers `file` loads when it runs (type-only imports and exports are erased). */
function valueImports(file: string): string[] {
  const src = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const out: string[] = [];
  for (const st of src.statements) {
    if (ts.isImportDeclaration(st)) {
      const c = st.importClause;
      if (c?.phaseModifier === ts.SyntaxKind.TypeKeyword) continue;
      const named = c?.namedBindings;
      const allTypes =
        c !== undefined &&
        c.name === undefined &&
        named !== undefined &&
        ts.isNamedImports(named) &&
        named.elements.length > 0 &&
        named.elements.every((e) => e.isTypeOnly);
      if (!allTypes) out.push((st.moduleSpecifier as ts.StringLiteral).text);
    } else if (ts.isExportDeclaration(st) && st.moduleSpecifier !== undefined && !st.isTypeOnly) {
      out.push((st.moduleSpecifier as ts.StringLiteral).text);
    }
  }
  return out;
}

/** Every npm package the agent's entry point loads at start, with the chain that loads it. */
function loadedPackages(entry: string): Map<string, string[]> {
  const seen = new Set<string>();
  const packages = new Map<string, string[]>();
  const walk = (file: string, chain: string[]): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of valueImports(file)) {
      const next = toSource(file, spec);
      if (next !== undefined) walk(next, [...chain, next.slice(ROOT.length + 1)]);
      else if (!packages.has(spec)) packages.set(spec, chain);
    }
  };
  walk(entry, [entry.slice(ROOT.length + 1)]);
  return packages;
}

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
