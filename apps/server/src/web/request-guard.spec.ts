import { describe, expect, it } from 'vitest';

import { checkHost, checkStateChange, hostAllowed, hostName, originAllowed } from './request-guard';

const policy = {
  publicUrl: 'https://periscope.example.com',
  allowedOrigins: ['https://periscope.example.com', 'https://ops.example.com:8443'],
};

describe(hostName.name, () => {
  it('reads names, ports and IPv6 literals; refuses junk', () => {
    expect(hostName('Periscope.Example.com')).toBe('periscope.example.com');
    expect(hostName('periscope.example.com:443')).toBe('periscope.example.com');
    expect(hostName('[::1]:8080')).toBe('[::1]');
    expect(hostName('127.0.0.1:8080')).toBe('127.0.0.1');
    for (const bad of [
      undefined,
      '',
      'a b',
      'evil.com/x',
      'user@evil.com',
      'evil.com:80:80',
      'x'.repeat(301),
    ])
      expect(hostName(bad), String(bad)).toBeUndefined();
  });
});

describe(hostAllowed.name, () => {
  it('serves the public host, allowed origins, IP addresses and localhost, on any port', () => {
    for (const ok of [
      'periscope.example.com',
      'periscope.example.com:8080',
      'ops.example.com:8443',
      '127.0.0.1:8080',
      '10.1.2.3',
      '[::1]:8080',
      'localhost:5173',
    ])
      expect(hostAllowed(ok, policy), ok).toBe(true);
  });

  it('refuses names DNS rebinding would bring (an attacker domain resolving to this address)', () => {
    for (const bad of [
      'evil.example',
      'periscope.example.com.evil.example',
      'localhost.evil.example',
      undefined,
    ])
      expect(hostAllowed(bad, policy), String(bad)).toBe(false);
    expect(checkHost('rebind.evil.example:8080', policy)).toMatchObject({
      code: 'E_MISDIRECTED',
      message: expect.stringContaining('PERISCOPE_PUBLIC_URL') as unknown,
    });
  });
});

describe(originAllowed.name, () => {
  it('accepts allowed origins and the request host itself', () => {
    expect(originAllowed('https://ops.example.com:8443', 'x', policy)).toBe(true);
    expect(originAllowed('http://127.0.0.1:8080', '127.0.0.1:8080', policy)).toBe(true);
    expect(originAllowed('http://127.0.0.1:9999', '127.0.0.1:8080', policy)).toBe(false);
    expect(originAllowed('null', 'periscope.example.com', policy)).toBe(false);
    expect(originAllowed('https://sibling.example.com', 'periscope.example.com', policy)).toBe(false);
  });
});

describe(checkStateChange.name, () => {
  const json = { host: 'periscope.example.com', 'content-type': 'application/json', 'content-length': '2' };

  it('lets reads and same-origin JSON through, and callers that are not browsers', () => {
    expect(checkStateChange('GET', { 'content-type': 'text/plain', origin: 'https://evil' }, policy)).toBe(
      undefined,
    );
    expect(checkStateChange('POST', { ...json, origin: 'https://periscope.example.com' }, policy)).toBe(
      undefined,
    );
    expect(checkStateChange('POST', { ...json, 'sec-fetch-site': 'same-origin' }, policy)).toBe(undefined);
    expect(checkStateChange('POST', json, policy)).toBe(undefined);
    expect(
      checkStateChange(
        'POST',
        { ...json, 'content-type': 'application/merge-patch+json; charset=utf-8' },
        policy,
      ),
    ).toBe(undefined);
    // no body: no content type needed
    expect(checkStateChange('POST', { host: 'periscope.example.com', 'content-length': '0' }, policy)).toBe(
      undefined,
    );
    expect(checkStateChange('DELETE', { host: 'periscope.example.com' }, policy)).toBe(undefined);
  });

  it('refuses cross-site and same-site callers with E_CSRF', () => {
    for (const h of [
      { origin: 'https://evil.example' },
      { origin: 'https://sibling.example.com' },
      { origin: 'null' },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
    ])
      expect(checkStateChange('POST', { ...json, ...h }, policy)?.code, JSON.stringify(h)).toBe('E_CSRF');
  });

  it('refuses form and text bodies with E_UNSUPPORTED_MEDIA_TYPE', () => {
    for (const type of [
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'text/plain',
      'application/jsonp',
      undefined,
    ]) {
      const headers = { host: 'periscope.example.com', 'content-length': '5', 'content-type': type };
      expect(checkStateChange('PUT', headers, policy)?.code, String(type)).toBe('E_UNSUPPORTED_MEDIA_TYPE');
    }
    expect(
      checkStateChange('PATCH', { 'transfer-encoding': 'chunked', 'content-type': 'text/plain' }, policy)
        ?.code,
    ).toBe('E_UNSUPPORTED_MEDIA_TYPE');
  });
});
