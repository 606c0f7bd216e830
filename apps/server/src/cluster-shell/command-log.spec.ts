import { describe, expect, it } from 'vitest';

import { COMMAND_LOG_LIMITS, commandLogFields, EMPTY_COMMAND_LOG, parseCommandLog } from './command-log';

const T = '2025-03-01T10:00:00.000Z';
const AT = Date.parse(T);
const WINDOW = { from: AT - 60_000, to: AT + 60_000 };

/** A line as the shell's recorder writes it: results padded with spaces to a fixed width. */
function line(fields: Record<string, unknown>): string {
  const { exit_code = 0, duration_ms = 12, ...head } = fields;
  const json = JSON.stringify({ timestamp: T, pid: 42, argv: ['kubectl', 'get', 'ns'], ...head });
  const results = `"exit_code":${JSON.stringify(exit_code)},"duration_ms":${JSON.stringify(duration_ms)}`;
  return `${json.slice(0, -1)},${results.padEnd(48, ' ')}}`;
}

const parse = (content: string, fileTruncated = false): ReturnType<typeof parseCommandLog> =>
  parseCommandLog(content, { fileTruncated, window: WINDOW });

describe(parseCommandLog.name, () => {
  it('keeps valid entries in file order, results included, padding and all', () => {
    const content = [
      line({}),
      line({ argv: ['helm', 'list', '-A'], pid: 43, exit_code: 1, duration_ms: 300 }),
      line({ exit_code: null, duration_ms: null }), // still running when the pod went away
      '',
    ].join('\n');
    expect(parse(content)).toEqual({
      commands: [
        { timestamp: T, pid: 42, argv: ['kubectl', 'get', 'ns'], exit_code: 0, duration_ms: 12 },
        { timestamp: T, pid: 43, argv: ['helm', 'list', '-A'], exit_code: 1, duration_ms: 300 },
        { timestamp: T, pid: 42, argv: ['kubectl', 'get', 'ns'], exit_code: null, duration_ms: null },
      ],
      skipped: 0,
      dropped: 0,
      redacted: 0,
      truncated: false,
    });
  });

  it('drops fields it does not know (a forged actor stays out of the record)', () => {
    const r = parse(line({ actor: 'bob', session_id: 'other', tier: 'admin' }));
    expect(r.commands).toEqual([
      { timestamp: T, pid: 42, argv: ['kubectl', 'get', 'ns'], exit_code: 0, duration_ms: 12 },
    ]);
  });

  it.each([
    ['not JSON', 'kubectl get ns'],
    ['a JSON list', '["kubectl","get"]'],
    ['a JSON string', '"kubectl get ns"'],
    ['no timestamp', JSON.stringify({ pid: 1, argv: ['kubectl'] })],
    ['a timestamp that is not ISO', line({ timestamp: 't' })],
    ['a date without time', line({ timestamp: '2025-03-01' })],
    ['a local time without zone', line({ timestamp: '2025-03-01T10:00:00.000' })],
    ['an impossible date', line({ timestamp: '2025-13-45T10:00:00.000Z' })],
    ['a time before the session', line({ timestamp: '2025-03-01T08:00:00.000Z' })],
    ['a time after the session', line({ timestamp: '2025-03-02T10:00:00.000Z' })],
    ['argv not a list', line({ argv: 'kubectl get ns' })],
    ['argv with a number', line({ argv: ['kubectl', 'scale', 3] })],
    ['an empty argv', line({ argv: [] })],
    ['another tool', line({ argv: ['bash', '-c', 'id'] })],
    ['a tool by path', line({ argv: ['/usr/local/bin/kubectl', 'get', 'ns'] })],
    ['a pid that is a string', line({ pid: '42' })],
    ['pid 0', line({ pid: 0 })],
    ['a fractional pid', line({ pid: 1.5 })],
    ['exit code 256', line({ exit_code: 256 })],
    ['a negative exit code', line({ exit_code: -1 })],
    ['an exit code as a string', line({ exit_code: '0' })],
    ['a negative duration', line({ duration_ms: -5 })],
    ['a fractional duration', line({ duration_ms: 1.25 })],
  ])('skips and counts a line with %s', (_about, bad) => {
    const r = parse(`${line({})}\n${bad}\n${line({ pid: 7 })}\n`);
    expect(r.commands.map((c) => c.pid)).toEqual([42, 7]);
    expect(r.skipped).toBe(1);
  });

  it('redacts before it stores and counts the entries it redacted', () => {
    const r = parse(
      [
        line({ argv: ['kubectl', 'create', 'secret', 'generic', 'db', '--from-literal=password=hunter2'] }),
        line({ argv: ['helm', 'install', 'db', 'pg', '--set', 'auth.password=hunter2'] }),
        line({}),
      ].join('\n'),
    );
    expect(r.commands.map((c) => c.argv)).toEqual([
      ['kubectl', 'create', 'secret', 'generic', 'db', '--from-literal=password=***'],
      ['helm', 'install', 'db', 'pg', '--set', 'auth.password=***'],
      ['kubectl', 'get', 'ns'],
    ]);
    expect(r.commands.map((c) => c.argv_redacted)).toEqual([true, true, undefined]);
    expect(r.redacted).toBe(2);
    expect(JSON.stringify(r)).not.toContain('hunter2');
  });

  it('cuts a 1 MiB command log to the cap, with a truncated marker', () => {
    // What the teardown reads from a padded file: the first transcriptMaxBytes (1 MiB), cut mid-line.
    const one = line({ argv: ['kubectl', 'get', 'pods', '-n', `team-${'x'.repeat(100)}`] });
    const file = `${one}\n`.repeat(Math.ceil((1024 * 1024) / (one.length + 1)) + 10);
    const read = file.slice(0, 1024 * 1024);
    expect(Buffer.byteLength(read)).toBe(1024 * 1024);
    const r = parse(read, true);
    expect(r.truncated).toBe(true);
    expect(r.commands.length).toBeLessThanOrEqual(COMMAND_LOG_LIMITS.maxEntries);
    expect(Buffer.byteLength(JSON.stringify(r.commands))).toBeLessThanOrEqual(COMMAND_LOG_LIMITS.maxBytes);
    expect(r.dropped).toBeGreaterThan(4000);
    expect(r.skipped).toBe(0); // the cut last line is not counted as a bad one
    expect(r.commands.length + r.dropped).toBe(Math.floor(read.length / (one.length + 1)));
    const fields = commandLogFields(r);
    expect(fields).toMatchObject({ commands_source: 'operator', commands_truncated: true });
    expect(Buffer.byteLength(JSON.stringify(fields))).toBeLessThan(COMMAND_LOG_LIMITS.maxBytes + 200);
  });

  it('caps the number of entries', () => {
    const r = parse(`${line({})}\n`.repeat(COMMAND_LOG_LIMITS.maxEntries + 25));
    expect(r.commands).toHaveLength(COMMAND_LOG_LIMITS.maxEntries);
    expect(r.dropped).toBe(25);
    expect(r.truncated).toBe(true);
  });

  it('bounds one huge entry: long arguments cut, trailing arguments left out, the tool kept', () => {
    const huge = ['kubectl', 'annotate', 'pod', 'p', `note=${'a'.repeat(100_000)}`];
    const many = ['kubectl', 'delete', 'pod', ...Array.from({ length: 1000 }, (_, i) => `pod-${i}`)];
    const wide = [
      'kubectl',
      'label',
      'ns',
      'a',
      ...Array.from({ length: 50 }, (_, i) => `k${i}=${'v'.repeat(900)}`),
    ];
    const r = parse(
      [line({ argv: huge }), line({ argv: many, pid: 2 }), line({ argv: wide, pid: 3 })].join('\n'),
    );
    expect(r.commands).toHaveLength(3);
    const [a, b, c] = r.commands as [(typeof r.commands)[0], (typeof r.commands)[0], (typeof r.commands)[0]];
    expect(c.argv.slice(0, 5)).toEqual(['kubectl', 'label', 'ns', 'a', `k0=${'v'.repeat(900)}`]);
    expect(c.argv.length).toBeLessThan(wide.length);
    expect(c.argv_truncated).toBe(true);
    expect(a.argv[4]).toBe(`note=${'a'.repeat(COMMAND_LOG_LIMITS.maxArgChars - 5)}…`);
    expect(a.argv_truncated).toBe(true);
    expect(b.argv[0]).toBe('kubectl');
    expect(b.argv.length).toBe(COMMAND_LOG_LIMITS.maxArgs);
    expect(b.argv_truncated).toBe(true);
    for (const c of r.commands)
      expect(Buffer.byteLength(JSON.stringify(c))).toBeLessThanOrEqual(COMMAND_LOG_LIMITS.maxEntryBytes);
  });

  it('has nothing to say about an empty or absent log', () => {
    expect(parse('')).toEqual(EMPTY_COMMAND_LOG);
    expect(commandLogFields(EMPTY_COMMAND_LOG)).toEqual({
      commands: [],
      commands_source: 'operator',
      commands_skipped: 0,
      commands_dropped: 0,
      commands_redacted: 0,
      commands_truncated: false,
    });
  });

  it('accepts any time when no window is given', () => {
    const r = parseCommandLog(line({ timestamp: '2001-01-01T00:00:00Z' }), { fileTruncated: false });
    expect(r.commands).toHaveLength(1);
  });
});
