/**
 * The import-graph walk of the lean-start tests (e2e/workspace/agent-lean-graph.spec.ts and
 * server-lean-graph.spec.ts): which npm packages an entry point loads at start, following the
 * workspace's own files (relative imports and `@periscope/<lib>` sources) and stopping at npm
 * packages.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import ts from 'typescript';

/** The repository's root. */
export const REPO_ROOT = resolve(__dirname, '../..');

/** Whether `pkg` is one of `heavy` (a name, or a scope when it ends in `/`), or a module of one. */
export function isListed(heavy: readonly string[], pkg: string): boolean {
  return heavy.some((h) => (h.endsWith('/') ? pkg.startsWith(h) : pkg === h || pkg.startsWith(`${h}/`)));
}

/**
 * A workspace import to its source file; undefined for an npm package. `@periscope/<lib>` is the
 * library's index, `@periscope/<lib>/dist/<module>` one module of it (e.g. without its NestJS parts).
 */
export function toSource(from: string, spec: string): string | undefined {
  let base: string | undefined;
  if (spec.startsWith('.')) base = resolve(dirname(from), spec);
  else {
    const m = /^@periscope\/([^/]+)(?:\/dist\/(.+))?$/.exec(spec);
    if (m?.[1] !== undefined) base = join(REPO_ROOT, 'libs', m[1], 'src', m[2] ?? 'index');
  }
  if (base === undefined) return undefined;
  for (const f of [`${base}.ts`, join(base, 'index.ts')]) if (existsSync(f)) return f;
  throw new Error(`cannot resolve ${spec} from ${from}`);
}

/**
 * Module specifiers `file` loads when it runs: its import and export declarations, less the
 * type-only ones (erased). `require()` and `import()` inside functions are the lazy loaders and
 * are not followed.
 */
export function valueImports(file: string): string[] {
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

/**
 * Every npm package the entry point loads at start, with the chain of files (relative to the
 * repository's root) that loads it.
 */
export function loadedPackages(entry: string): Map<string, string[]> {
  const seen = new Set<string>();
  const packages = new Map<string, string[]>();
  const walk = (file: string, chain: string[]): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of valueImports(file)) {
      const next = toSource(file, spec);
      if (next !== undefined) walk(next, [...chain, next.slice(REPO_ROOT.length + 1)]);
      else if (!packages.has(spec)) packages.set(spec, chain);
    }
  };
  walk(entry, [entry.slice(REPO_ROOT.length + 1)]);
  return packages;
}
