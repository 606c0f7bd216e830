import { describe, expect, it } from 'vitest';

import { safeReturnTo } from './return-to';

describe(safeReturnTo.name, () => {
  it('keeps same-site relative paths with query and fragment', () => {
    expect(safeReturnTo('/')).toBe('/');
    expect(safeReturnTo('/clusters/lab?tab=pods#x')).toBe('/clusters/lab?tab=pods#x');
    expect(safeReturnTo('/a/../b')).toBe('/b');
  });

  it('turns everything that could leave the site into /', () => {
    for (const bad of [
      '//evil.example',
      '//evil.example/path',
      '/\\evil.example',
      '\\\\evil.example',
      'https://evil.example/',
      'http:evil.example',
      'javascript:alert(1)',
      'evil.example',
      '/\t/evil.example',
      '/\n/evil.example',
      '',
      'x'.repeat(3000),
    ])
      expect(safeReturnTo(bad), bad).toBe('/');
  });

  it('ignores non-strings (repeated or missing query parameters)', () => {
    expect(safeReturnTo(undefined)).toBe('/');
    expect(safeReturnTo(['/a', '/b'])).toBe('/');
    expect(safeReturnTo({ a: 1 })).toBe('/');
  });
});
