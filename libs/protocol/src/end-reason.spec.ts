import { describe, expect, it } from 'vitest';

import { cleanEndReason, END_REASON_MAX_CHARS, END_REASON_PATTERN } from './end-reason';

describe('end reason', () => {
  it('accepts one line of ordinary text, any script, and refuses control and format characters', () => {
    for (const ok of ['', 'incident 42', 'Wartung — bitte später', '事故対応', 'emoji 🚒 ok'])
      expect(END_REASON_PATTERN.test(ok)).toBe(true);
    for (const bad of [
      'a\nb',
      'a\rb',
      'a\tb',
      '\u001b[2J',
      '\u0000',
      '\u007f',
      '\u0085',
      '\u202e',
      '\u2066',
      '\u200b',
      '\u2028',
      '\u2029',
      '\ud800',
    ])
      expect(END_REASON_PATTERN.test(`x${bad}y`)).toBe(false);
  });

  it('cleans what reaches the service by another path: controls to spaces, trimmed, bounded, never empty', () => {
    expect(cleanEndReason(undefined)).toBeUndefined();
    expect(cleanEndReason('   ')).toBeUndefined();
    expect(cleanEndReason('\n\t\u001b')).toBeUndefined();
    expect(cleanEndReason('  two\nlines\u202e here ')).toBe('two lines here');
    expect(cleanEndReason('a'.repeat(END_REASON_MAX_CHARS + 50))).toHaveLength(END_REASON_MAX_CHARS);
    // A surrogate pair across the cut is dropped whole, not split.
    const cut = cleanEndReason(`${'a'.repeat(END_REASON_MAX_CHARS - 1)}🚒`);
    expect(cut).toBe('a'.repeat(END_REASON_MAX_CHARS - 1));
    expect(END_REASON_PATTERN.test(cut ?? '')).toBe(true);
  });
});
