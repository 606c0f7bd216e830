import { parseDocument } from 'yaml';

/** One documented value: its dotted key, its default as JSON, and the comment above it. */
export interface ValueRow {
  key: string;
  type: string;
  default: string;
  description: string;
}

const START = '<!-- values-table:start -->';
const END = '<!-- values-table:end -->';

function typeOf(v: unknown): string {
  if (Array.isArray(v)) return 'list';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'object';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'number';
  return typeof v;
}

function clean(comment: string | null | undefined): string {
  // Only the paragraph right above a key describes it; a file header separated by a blank line
  // (which the parser folds into the first key's comment) does not.
  return ((comment ?? '').split(/\n\s*\n/).pop() ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join(' ');
}

/*
 * The few node fields read here exist with the same meaning in yaml 1.x and 2.x; the workspace
 * resolves whichever is hoisted, so the walk is written against this shape, not a major version.
 */
interface YamlNode {
  commentBefore?: string | null;
  items?: YamlPair[];
  value?: unknown;
  toJSON(): unknown;
}
interface YamlPair {
  key: YamlNode | string | null;
  value: YamlNode | null;
}

const isMapNode = (n: YamlNode | null): n is YamlNode & { items: YamlPair[] } =>
  n !== null && Array.isArray(n.items) && n.items.every((p) => typeof p === 'object' && 'key' in p);

function keyName(p: YamlPair): string {
  return typeof p.key === 'object' && p.key !== null ? String(p.key.value) : String(p.key);
}

/**
 * Walks values.yaml. A map is a section (recursed into) when a key at some depth below it has a
 * comment; a map with no comments inside (e.g. a securityContext) is one value, shown whole.
 * The description of a key is the comment right above it; the parser may attach the comment of a
 * map's first key to the map itself, so that is looked up too.
 */
export function valueRows(valuesYaml: string): ValueRow[] {
  const doc = parseDocument(valuesYaml) as unknown as { contents: YamlNode | null };
  const rows: ValueRow[] = [];
  const comments = (map: YamlNode & { items: YamlPair[] }): string[] =>
    map.items.map((p, i) =>
      clean(
        (typeof p.key === 'object' && p.key !== null ? p.key.commentBefore : undefined) ??
          (i === 0 ? map.commentBefore : undefined),
      ),
    );
  // A section has a commented key somewhere below it.
  const isSection = (n: YamlNode | null): n is YamlNode & { items: YamlPair[] } =>
    isMapNode(n) &&
    n.items.length > 0 &&
    (comments(n).some((c) => c !== '') || n.items.some((p) => isSection(p.value)));
  const walk = (map: YamlNode & { items: YamlPair[] }, prefix: string): void => {
    const described = comments(map);
    map.items.forEach((pair, i) => {
      const key = `${prefix}${keyName(pair)}`;
      const value = pair.value;
      if (isSection(value)) {
        walk(value, `${key}.`);
        return;
      }
      const js: unknown = value === null ? null : value.toJSON();
      rows.push({ key, type: typeOf(js), default: JSON.stringify(js), description: described[i] ?? '' });
    });
  };
  if (isMapNode(doc.contents)) walk(doc.contents, '');
  return rows;
}

const cell = (s: string): string => s.replaceAll('|', '\\|');
// Markdown would read "<tier>" in prose as an HTML tag and drop it.
const prose = (s: string): string => cell(s).replaceAll('<', '&lt;').replaceAll('>', '&gt;');

export function valuesTable(rows: ValueRow[]): string {
  return [
    '| Key | Type | Default | Description |',
    '|---|---|---|---|',
    ...rows.map((r) => `| \`${r.key}\` | ${r.type} | \`${cell(r.default)}\` | ${prose(r.description)} |`),
  ].join('\n');
}

/** The README with its values table replaced; undefined when the markers are missing. */
export function withValuesTable(readme: string, table: string): string | undefined {
  const a = readme.indexOf(START);
  const b = readme.indexOf(END);
  if (a < 0 || b < a) return undefined;
  return `${readme.slice(0, a + START.length)}\n${table}\n${readme.slice(b)}`;
}
