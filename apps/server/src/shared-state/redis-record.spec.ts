import { describe, expect, it } from 'vitest';

import { OutageLog, parseRecord } from './redis-record';

function recorder(): { lines: [string, object, string][]; log: OutageLog } {
  const lines: [string, object, string][] = [];
  const log = new OutageLog(
    {
      info: (o, msg) => lines.push(['info', o, msg]),
      warn: (o, msg) => lines.push(['warn', o, msg]),
    },
    { down: 'could not write X; retrying', back: 'X written again', backFields: { replica: 'r1' } },
  );
  return { lines, log };
}

describe('OutageLog', () => {
  it('logs one warning per outage and one line when it ends, nothing in between', () => {
    const { lines, log } = recorder();
    log.ok();
    expect(lines).toEqual([]);
    log.failed(new Error('ECONNREFUSED'));
    log.failed(new Error('ECONNREFUSED again'));
    expect(log.failing).toBe(true);
    log.ok();
    log.ok();
    expect(log.failing).toBe(false);
    log.failed(new Error('timeout'));
    expect(lines).toEqual([
      ['warn', { err: 'ECONNREFUSED' }, 'could not write X; retrying'],
      ['info', { replica: 'r1' }, 'X written again'],
      ['warn', { err: 'timeout' }, 'could not write X; retrying'],
    ]);
  });

  it('logs the end of an outage without fields when none are given', () => {
    const lines: object[] = [];
    const log = new OutageLog(
      { info: (o) => lines.push(o), warn: (o) => lines.push(o) },
      { down: 'down', back: 'back' },
    );
    log.failed(new Error('e'));
    log.ok();
    expect(lines).toEqual([{ err: 'e' }, {}]);
  });
});

describe('parseRecord', () => {
  it('answers a JSON object and nothing else', () => {
    expect(parseRecord('{"replica":"r1","n":2}', 100)).toEqual({ replica: 'r1', n: 2 });
    expect(parseRecord('[1]', 100)).toEqual([1]); // an array is an object: its fields are checked by the caller
    for (const t of [null, undefined, '', 'nope', '{"a":', 'null', '3', '"s"'])
      expect(parseRecord(t, 100)).toBeUndefined();
  });

  it('does not parse a record longer than its bound', () => {
    const text = JSON.stringify({ replica: 'r1', pad: 'x'.repeat(50) });
    expect(parseRecord(text, text.length)).toEqual({ replica: 'r1', pad: 'x'.repeat(50) });
    expect(parseRecord(text, text.length - 1)).toBeUndefined();
  });
});
