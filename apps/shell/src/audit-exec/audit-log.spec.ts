import { readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { tempDir } from '../testing/processes';
import { AuditLog, finishedLine, RESULT_WIDTH, startLine, type AuditStart } from './audit-log';

let dir: string;
let n = 0;
beforeAll(() => {
  dir = tempDir('audit-log');
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const call = (argv: string[], pid = 4242): AuditStart => ({
  timestamp: '2030-01-02T03:04:05.678Z',
  pid,
  argv,
});

function fresh(): { file: string; warnings: string[]; log: (procDir?: string) => AuditLog } {
  const file = join(dir, `case-${++n}`, 'audit.jsonl');
  const warnings: string[] = [];
  return {
    file,
    warnings,
    log: (procDir) =>
      new AuditLog({ file, warn: (m) => warnings.push(m), ...(procDir !== undefined ? { procDir } : {}) }),
  };
}

const lines = (file: string): unknown[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .slice(0, -1)
    .map((l) => JSON.parse(l) as unknown);

describe(AuditLog.name, () => {
  it('formats the pending and the finished line with the same length', () => {
    const start = call(['kubectl', 'get', 'pods', 'a b', 'ünï ✓ 日本', 'say "hi"\n']);
    const pending = startLine(start);
    const done = finishedLine(start, 130, 123456);
    expect(Buffer.byteLength(done)).toBe(Buffer.byteLength(pending));
    expect(pending).toBe(
      `{"timestamp":"2030-01-02T03:04:05.678Z","pid":4242,"argv":["kubectl","get","pods","a b","ünï ✓ 日本","say \\"hi\\"\\n"],${'"exit_code":null,"duration_ms":null'.padEnd(RESULT_WIDTH)}}\n`,
    );
    expect(JSON.parse(done)).toEqual({ ...start, exit_code: 130, duration_ms: 123456 });
    expect(JSON.parse(pending)).toEqual({ ...start, exit_code: null, duration_ms: null });
  });

  it('writes the line before the call and completes the same line after it', () => {
    const { file, warnings, log } = fresh();
    const audit = log();
    audit.start(call(['kubectl', 'get', 'ns']));
    expect(lines(file)).toEqual([{ ...call(['kubectl', 'get', 'ns']), exit_code: null, duration_ms: null }]);
    audit.finish(0, 17);
    expect(lines(file)).toEqual([{ ...call(['kubectl', 'get', 'ns']), exit_code: 0, duration_ms: 17 }]);
    expect(warnings).toEqual([]);
  });

  it('completes the right line when calls overlap', () => {
    const { file, log } = fresh();
    const a = log();
    const b = log();
    const c = log();
    a.start(call(['kubectl', 'get', 'pods', '-w'], 1));
    b.start(call(['helm', 'list'], 2));
    c.start(call(['kubectl', 'version'], 3));
    b.finish(0, 5);
    c.finish(1, 6);
    a.finish(130, 7000);
    expect(lines(file)).toMatchObject([
      { pid: 1, exit_code: 130, duration_ms: 7000 },
      { pid: 2, exit_code: 0, duration_ms: 5 },
      { pid: 3, exit_code: 1, duration_ms: 6 },
    ]);
  });

  it('finds its line from the file size when /proc is missing', () => {
    const { file, warnings, log } = fresh();
    const first = log('/nonexistent-proc');
    first.start(call(['kubectl', 'a']));
    first.finish(3, 1);
    const second = log('/nonexistent-proc');
    second.start(call(['kubectl', 'b']));
    second.finish(4, 2);
    expect(lines(file)).toMatchObject([{ exit_code: 3 }, { exit_code: 4 }]);
    expect(warnings).toEqual([]);
  });

  it('creates the directory and the file private to the user', () => {
    const { file, log } = fresh();
    log().start(call(['kubectl']));
    expect(readFileSync(file, 'utf8')).toContain('"argv":["kubectl"]');
  });

  it('warns once and never throws when the file cannot be written', () => {
    const notADir = join(dir, `file-${++n}`);
    writeFileSync(notADir, 'x');
    const warnings: string[] = [];
    const audit = new AuditLog({ file: join(notADir, 'audit.jsonl'), warn: (m) => warnings.push(m) });
    audit.start(call(['kubectl']));
    audit.finish(0, 1);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^cannot write the audit record to .*audit\.jsonl: /);
  });

  it('does not overwrite anything when the file changed under it', () => {
    const { file, warnings, log } = fresh();
    const audit = log();
    audit.start(call(['kubectl', 'get', 'ns']));
    truncateSync(file, 0);
    writeFileSync(file, 'someone else\n'.repeat(20));
    audit.finish(0, 1);
    expect(readFileSync(file, 'utf8')).toBe('someone else\n'.repeat(20));
    expect(warnings).toEqual([
      `cannot record the exit code in ${file}: the file changed under us (truncated or replaced)`,
    ]);
  });

  it('does nothing without a file', () => {
    const warnings: string[] = [];
    const audit = new AuditLog({ file: undefined, warn: (m) => warnings.push(m) });
    audit.start(call(['kubectl']));
    audit.finish(0, 1);
    expect(warnings).toEqual([]);
  });
});
