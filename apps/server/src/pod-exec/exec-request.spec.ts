import { describe, expect, it } from 'vitest';

import { checkCommand, checkNames, decodeCommandParam, DEFAULT_COMMAND } from './exec-request';

describe('pod exec input', () => {
  it('accepts Kubernetes names and refuses paths, dots and unicode with a clear message', () => {
    expect(checkNames('default', 'web-0', 'app')).toBeUndefined();
    expect(checkNames('default', 'web.v1-0', undefined)).toBeUndefined();
    expect(checkNames('..', 'web', 'app')).toMatch(/namespace "\.\." is not a valid/);
    expect(checkNames('ns', 'a/b', 'app')).toMatch(/pod "a\/b"/);
    expect(checkNames('ns', 'pöd', 'app')).toMatch(/pod/);
    expect(checkNames('ns', 'pod', 'Main')).toMatch(/container/);
    expect(checkNames('ns', 'x'.repeat(254), undefined)).toMatch(/pod/);
  });

  it('checks commands and defaults to the bash-or-sh probe', () => {
    expect(checkCommand(undefined)).toEqual({ ok: true, value: DEFAULT_COMMAND });
    expect(checkCommand(['ls', '-l'])).toEqual({ ok: true, value: ['ls', '-l'] });
    expect(checkCommand([])).toMatchObject({ ok: false });
    expect(checkCommand('ls')).toMatchObject({ ok: false });
    expect(checkCommand([1])).toMatchObject({ ok: false });
    expect(checkCommand(['x'.repeat(17 * 1024)])).toMatchObject({ ok: false });
    expect(checkCommand(null)).toEqual({ ok: true, value: DEFAULT_COMMAND });
    expect(checkCommand(['a\0b'])).toEqual({
      ok: false,
      message: 'command is longer than 16 KiB or contains NUL bytes',
    });
    expect(checkCommand(Array.from({ length: 65 }, () => 'a'))).toEqual({
      ok: false,
      message: 'command must be a list of 1 to 64 strings, e.g. ["sh","-c","ls"]',
    });
  });

  it('decodes base64url and padded base64 command parameters', () => {
    const b64url = Buffer.from(JSON.stringify(['echo', 'hi?'])).toString('base64url');
    expect(decodeCommandParam(b64url)).toEqual({ ok: true, value: ['echo', 'hi?'] });
    const padded = Buffer.from(JSON.stringify(['id'])).toString('base64');
    expect(decodeCommandParam(padded)).toEqual({ ok: true, value: ['id'] });
    expect(decodeCommandParam(null)).toEqual({ ok: true, value: DEFAULT_COMMAND });
    expect(decodeCommandParam('!!!')).toMatchObject({ ok: false });
    expect(decodeCommandParam(Buffer.from('{"a":1}').toString('base64url'))).toMatchObject({ ok: false });
  });
});
