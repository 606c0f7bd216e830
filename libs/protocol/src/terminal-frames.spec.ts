import { describe, expect, it } from 'vitest';

import { parseClientFrame, parseServerFrame, TERMINAL_LIMITS } from './terminal-frames';

describe(parseClientFrame.name, () => {
  it('accepts the frames of the contract, as plain objects', () => {
    const resize = parseClientFrame('{"type":"resize","cols":120,"rows":40}');
    expect(resize).toStrictEqual({ type: 'resize', cols: 120, rows: 40 });
    expect(parseClientFrame('{"type":"close"}')).toStrictEqual({ type: 'close' });
    expect(parseClientFrame('{"type":"keepalive"}')).toStrictEqual({ type: 'keepalive' });
  });

  it('accepts the sizes at the bounds of TERMINAL_LIMITS', () => {
    const { minCols, maxCols, minRows, maxRows } = TERMINAL_LIMITS;
    expect(parseClientFrame(JSON.stringify({ type: 'resize', cols: minCols, rows: maxRows }))).toBeDefined();
    expect(parseClientFrame(JSON.stringify({ type: 'resize', cols: maxCols, rows: minRows }))).toBeDefined();
  });

  it.each([
    ['not json', '{'],
    ['unknown type', '{"type":"exec","cmd":"rm"}'],
    ['no type', '{"cols":80,"rows":24}'],
    ['an inherited type name', '{"type":"constructor"}'],
    ['huge resize', '{"type":"resize","cols":100000,"rows":40}'],
    ['cols over the limit', `{"type":"resize","cols":${TERMINAL_LIMITS.maxCols + 1},"rows":40}`],
    ['rows over the limit', `{"type":"resize","cols":80,"rows":${TERMINAL_LIMITS.maxRows + 1}}`],
    ['zero cols', '{"type":"resize","cols":0,"rows":24}'],
    ['fractional size', '{"type":"resize","cols":80.5,"rows":24}'],
    ['string size', '{"type":"resize","cols":"80","rows":24}'],
    ['missing rows', '{"type":"resize","cols":80}'],
    ['an unknown field', '{"type":"close","force":true}'],
    ['an unknown field on resize', '{"type":"resize","cols":80,"rows":24,"x":1}'],
    ['an array', '[{"type":"close"}]'],
    ['null', 'null'],
  ])('refuses %s', (_name, text) => {
    expect(parseClientFrame(text)).toBeUndefined();
  });
});

const hello = { type: 'hello', sessionId: 'sess-1', kind: 'cluster_shell', cluster: 'local', mode: 'bash' };

describe(parseServerFrame.name, () => {
  it('parses the frames of the contract, resumed included', () => {
    expect(parseServerFrame(JSON.stringify({ ...hello, resumed: true }))).toStrictEqual({
      ...hello,
      resumed: true,
    });
    expect(
      parseServerFrame(
        JSON.stringify({ ...hello, kind: 'pod_exec', namespace: 'ns', pod: 'p', container: 'c' }),
      ),
    ).toStrictEqual({ ...hello, kind: 'pod_exec', namespace: 'ns', pod: 'p', container: 'c' });
    expect(parseServerFrame('{"type":"status","phase":"pod","message":"pulling"}')).toStrictEqual({
      type: 'status',
      phase: 'pod',
      message: 'pulling',
    });
    expect(parseServerFrame('{"type":"idle_warn","secondsRemaining":30}')).toStrictEqual({
      type: 'idle_warn',
      secondsRemaining: 30,
    });
    expect(parseServerFrame('{"type":"max_warn","secondsRemaining":300}')).toStrictEqual({
      type: 'max_warn',
      secondsRemaining: 300,
    });
    expect(parseServerFrame('{"type":"closed","reason":"exit","exitCode":0}')).toStrictEqual({
      type: 'closed',
      reason: 'exit',
      exitCode: 0,
    });
    expect(
      parseServerFrame('{"type":"error","code":"E_STREAM","message":"m","retryable":true}'),
    ).toStrictEqual({ type: 'error', code: 'E_STREAM', message: 'm', retryable: true });
  });

  it('treats missing optional fields as absent or false', () => {
    expect(parseServerFrame('{"type":"closed","reason":"idle"}')).toStrictEqual({
      type: 'closed',
      reason: 'idle',
    });
    expect(parseServerFrame('{"type":"error","code":"E_X","message":"m"}')).toStrictEqual({
      type: 'error',
      code: 'E_X',
      message: 'm',
      retryable: false,
    });
  });

  it('drops fields a newer server may add instead of ignoring the frame', () => {
    expect(parseServerFrame(JSON.stringify({ ...hello, region: 'eu' }))).toStrictEqual(hello);
  });

  it.each([
    ['not json', '{'],
    ['an array', '[]'],
    ['null', 'null'],
    ['an unknown type', '{"type":"exec"}'],
    ['a hello without its fields', '{"type":"hello"}'],
    ['a hello of an unknown kind', JSON.stringify({ ...hello, kind: 'ssh' })],
    ['a hello with resumed not a boolean', JSON.stringify({ ...hello, resumed: 'yes' })],
    ['an idle warning without seconds', '{"type":"idle_warn"}'],
    ['a max-length warning without seconds', '{"type":"max_warn"}'],
    ['a max-length warning with fractional seconds', '{"type":"max_warn","secondsRemaining":1.5}'],
    ['a closed frame with a string exit code', '{"type":"closed","reason":"exit","exitCode":"0"}'],
    ['an error without a code', '{"type":"error","message":"m"}'],
    ['an error with retryable not a boolean', '{"type":"error","code":"E_X","message":"m","retryable":1}'],
    ['an oversized session id', JSON.stringify({ ...hello, sessionId: 'x'.repeat(65) })],
  ])('ignores %s', (_name, text) => {
    expect(parseServerFrame(text)).toBeUndefined();
  });
});
