/**
 * The free-text reason a person gives when ending a live session (`DELETE /api/sessions/{id}`):
 * one line of text, bounded, with no control or format characters, so it cannot break a log
 * line, move a terminal's cursor or reorder what a reader sees (bidi overrides) wherever it is
 * shown: the audit store and its stdout line, the server log, the ended session's banner.
 */

/** Longest reason accepted, in characters (UTF-16 code units, as class-validator counts). */
export const END_REASON_MAX_CHARS = 500;

/**
 * Characters a reason must not contain: control characters (C0, DEL, C1: newlines, tabs, escape
 * sequences), format characters (bidi overrides and marks, zero-width characters), line and
 * paragraph separators, and lone surrogates.
 */
export const END_REASON_FORBIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

/** The same rule as a whole-string pattern (for class-validator's `@Matches`). */
export const END_REASON_PATTERN = /^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]*$/u;

export const END_REASON_RULE = `reason must be one line of at most ${END_REASON_MAX_CHARS} characters without control or format characters (newlines, tabs, escape sequences, bidi marks)`;

const FORBIDDEN_ALL = new RegExp(END_REASON_FORBIDDEN.source, 'gu');

/**
 * The reason as stored: forbidden characters become spaces, runs of white space one space, the
 * ends trimmed, at most END_REASON_MAX_CHARS characters (never a split surrogate pair); undefined
 * when nothing is left. The HTTP layer already refuses such input: this is the second line, for
 * every other caller.
 */
export function cleanEndReason(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const text = raw.replace(FORBIDDEN_ALL, ' ').replace(/\s+/gu, ' ').trim();
  if (text === '') return undefined;
  if (text.length <= END_REASON_MAX_CHARS) return text;
  let cut = text.slice(0, END_REASON_MAX_CHARS);
  // Do not end on the first half of a surrogate pair.
  if (/[\uD800-\uDBFF]$/u.test(cut)) cut = cut.slice(0, -1);
  return cut.trimEnd();
}
