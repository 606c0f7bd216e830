import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { valueRows, valuesTable, withValuesTable } from './chart-docs';
import { CHARTS_DIR, UPDATE, type ChartName } from './helm';

interface SchemaNode {
  type?: string | string[];
  properties?: Record<string, SchemaNode>;
}

const CHARTS: ChartName[] = ['periscope', 'periscope-agent'];

describe.each(CHARTS)('%s README and schema', (chart) => {
  const dir = join(CHARTS_DIR, chart);
  const rows = valueRows(readFileSync(join(dir, 'values.yaml'), 'utf8'));

  it('describes every value in values.yaml (a comment right above the key)', () => {
    expect(rows.length).toBeGreaterThan(20);
    expect(rows.filter((r) => r.description === '').map((r) => r.key)).toEqual([]);
  });

  it('lists every value with its default (refresh: PERISCOPE_UPDATE_GOLDEN=1)', () => {
    const file = join(dir, 'README.md');
    const readme = readFileSync(file, 'utf8');
    const expected = withValuesTable(readme, valuesTable(rows));
    if (expected === undefined) throw new Error(`${file} lacks the values-table markers`);
    if (UPDATE) writeFileSync(file, expected);
    expect(readFileSync(file, 'utf8')).toBe(expected);
  });

  it('declares every value in values.schema.json, so a misspelt key fails', () => {
    const schema = JSON.parse(readFileSync(join(dir, 'values.schema.json'), 'utf8')) as SchemaNode;
    const missing = rows
      .map((r) => r.key)
      .filter((key) => {
        let node: SchemaNode | undefined = schema;
        for (const part of key.split('.')) node = node?.properties?.[part];
        return node === undefined;
      });
    expect(missing).toEqual([]);
  });
});
