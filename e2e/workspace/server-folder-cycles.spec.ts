import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = resolve(__dirname, '../..');
const serverSrc = join(root, 'apps/server/src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    // Tests import whatever they test; the structure is what the running server imports.
    return name.endsWith('.ts') && !name.endsWith('.spec.ts') ? [path] : [];
  });
}

/** A file's node: its top-level folder, or itself for a file directly in `src/` (main.ts, version.ts). */
function folderOf(file: string, srcDir: string): string {
  const rel = relative(srcDir, file);
  if (!rel.includes(sep))
    return existsSync(file) && statSync(file).isDirectory() ? rel : rel.replace(/\.ts$/, '').concat('.ts');
  return rel.split(sep)[0] ?? rel;
}

/**
 * `from → to` edges between the top-level folders of `srcDir`, one per import (type-only
 * imports and re-exports count: a folder that names another's types depends on it), with the
 * importing file and specifier of one example per edge.
 */
export function folderGraph(srcDir: string): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>();
  for (const file of sourceFiles(srcDir)) {
    const from = folderOf(file, srcDir);
    const edges = graph.get(from) ?? new Map<string, string>();
    graph.set(from, edges);
    const imports = ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles;
    for (const { fileName } of imports) {
      if (!fileName.startsWith('.')) continue;
      const target = resolve(dirname(file), fileName);
      if (!target.startsWith(srcDir + sep)) continue;
      const to = folderOf(target, srcDir);
      if (to !== from && !edges.has(to)) edges.set(to, `${relative(srcDir, file)} imports '${fileName}'`);
    }
  }
  return graph;
}

/** One cycle of the graph as its path (first node repeated at the end), or undefined. */
export function findCycle(graph: Map<string, Map<string, string>>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (node: string): string[] | undefined => {
    state.set(node, 'open');
    path.push(node);
    for (const next of [...(graph.get(node)?.keys() ?? [])].sort()) {
      if (state.get(next) === 'open') return [...path.slice(path.indexOf(next)), next];
      if (state.get(next) === undefined) {
        const found = visit(next);
        if (found) return found;
      }
    }
    path.pop();
    state.set(node, 'done');
    return undefined;
  };
  for (const node of [...graph.keys()].sort()) {
    if (state.get(node) !== undefined) continue;
    const found = visit(node);
    if (found) return found;
  }
  return undefined;
}

/** A cycle printed with the import that makes each of its steps. */
function describeCycle(graph: Map<string, Map<string, string>>, cycle: string[]): string {
  return cycle
    .slice(0, -1)
    .map((from, i) => {
      const to = cycle[i + 1] ?? '';
      return `  ${from} → ${to}   (${graph.get(from)?.get(to) ?? '?'})`;
    })
    .join('\n');
}

const graphOf = (edges: Record<string, string[]>): Map<string, Map<string, string>> =>
  new Map(Object.entries(edges).map(([k, v]) => [k, new Map(v.map((to) => [to, `${k} → ${to}`]))]));

describe('server folder graph', () => {
  it('finds a cycle where there is one, and none in a tree', () => {
    expect(findCycle(graphOf({ a: ['b'], b: ['c'], c: ['a'], d: ['a'] }))).toEqual(['a', 'b', 'c', 'a']);
    expect(findCycle(graphOf({ agents: ['clusters'], clusters: ['agents'] }))).toEqual([
      'agents',
      'clusters',
      'agents',
    ]);
    expect(findCycle(graphOf({ a: ['b', 'c'], b: ['c'], c: [], d: ['a', 'c'] }))).toBeUndefined();
  });

  it('reads the folders of apps/server/src and their imports', () => {
    const graph = folderGraph(serverSrc);
    // A few edges the server is built on; if these vanish the reader, not the code, broke.
    expect([...(graph.get('app.module.ts')?.keys() ?? [])]).toContain('config');
    expect([...(graph.get('config')?.keys() ?? [])]).toContain('version.ts');
    expect([...(graph.get('clusters')?.keys() ?? [])]).toContain('config');
  });

  it('has no folder-level import cycle in apps/server/src', () => {
    const graph = folderGraph(serverSrc);
    const cycle = findCycle(graph);
    const message = cycle
      ? `apps/server/src has a folder-level import cycle:\n${describeCycle(graph, cycle)}`
      : 'no cycle';
    expect(message).toBe('no cycle');
  });
});
