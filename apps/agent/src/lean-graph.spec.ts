import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '../../..');
/** packages an idle agent must not load (heavy; loaded on first use where needed) */
const HEAVY = ['@kubernetes/client-node', '@aws-sdk/', '@smithy/', '@peculiar/x509'];

/** A workspace import to its source file; undefined for an npm package. */
function toSource(from: string, spec: string): string | undefined {
  let base: string | undefined;
  if (spec.startsWith('.')) base = resolve(dirname(from), spec);
  else if (spec === '@periscope/cluster-ops/dist/lean') base = join(ROOT, 'libs/cluster-ops/src/lean');
  else {
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

describe('the agent module graph', () => {
  it('does not load @kubernetes/client-node, the AWS SDK or @peculiar/x509 at start', () => {
    const packages = loadedPackages(join(ROOT, 'apps/agent/src/main.ts'));
    // the walk sees the agent's real dependencies (a broken walk would pass vacuously)
    expect([...packages.keys()]).toEqual(expect.arrayContaining(['socket.io-client', 'ws', 'yaml']));
    const heavy = [...packages].filter(([p]) => HEAVY.some((h) => p.startsWith(h)));
    expect(heavy.map(([p, chain]) => `${p} via ${chain.join(' → ')}`)).toEqual([]);
  });
});
