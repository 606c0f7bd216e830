/**
 * The command line of the kubectl-only prompt: words split on blanks with the quoting a person
 * types into bash (single quotes, double quotes, backslash), and nothing else of a shell. Every
 * character bash would give a meaning to beyond quoting is refused, so a line means the same here
 * as it would in bash, or it does not run. See docs/cluster-shell.md, "kubectl-only mode".
 */

/** Longest line the prompt accepts (kubectl arguments are short; a paste of a file is not). */
export const MAX_LINE_CHARS = 8192;
/** Most words on one line. */
export const MAX_WORDS = 256;

export type ParseResult = { ok: true; words: string[] } | { ok: false; message: string };

const ALLOWED_HINT = 'type one kubectl or helm command per line; "help" lists what is allowed';

function refuse(what: string, why: string): ParseResult {
  return { ok: false, message: `refused: ${what} ${why}; ${ALLOWED_HINT}` };
}

/** Characters bash treats as operators outside quotes, each with the reason it is refused. */
const OPERATOR_REASONS: Record<string, [string, string]> = {
  '|': ['"|" (a pipe)', 'is not available: this shell runs no other program'],
  '&': ['"&" (background job or "&&")', 'is not available: commands run one at a time'],
  ';': ['";" (command list)', 'is not available: one command per line'],
  '<': ['"<" (redirection)', 'is not available: this shell reads and writes no local files'],
  '>': ['">" (redirection)', 'is not available: this shell reads and writes no local files'],
  '(': ['"(" (subshell)', 'is not available: this shell runs no other program'],
  ')': ['")" (subshell)', 'is not available: this shell runs no other program'],
};
const EXPANSION = 'is not available: this shell expands nothing';

function expansionRefusal(ch: string, next: string | undefined): ParseResult {
  if (ch === '`') return refuse('"`" (command substitution)', EXPANSION);
  if (ch === '!') return refuse('"!" (history expansion)', EXPANSION);
  if (next === '(') return refuse('"$(" (command substitution)', EXPANSION);
  return refuse('"$" (variable expansion)', EXPANSION);
}

/** An environment assignment bash would apply to the command (`FOO=bar kubectl …`). */
const ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*\+?=/;

/**
 * Splits one line into words. Single quotes keep everything literally; inside double quotes a
 * backslash escapes `"`, `\`, `$` and `` ` `` (as in bash); outside quotes a backslash keeps the
 * next character. `$`, `` ` `` and `!` outside single quotes, the operators `| & ; < > ( )`
 * outside quotes, line breaks and control characters anywhere, an unterminated quote and an
 * environment assignment as the first word are refused with a message. Globs, braces and `~` are
 * passed on literally (kubectl's jsonpath uses them), which bash would only do when nothing matches.
 * A `#` starting a word begins a comment, as in bash.
 */
export function parseLine(line: string): ParseResult {
  if (line.length > MAX_LINE_CHARS)
    return refuse(`a line of ${line.length} characters`, `is too long (at most ${MAX_LINE_CHARS})`);
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '' | "'" | '"' = '';
  const end = (): void => {
    if (inWord) words.push(word);
    word = '';
    inWord = false;
  };
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    const code = ch.charCodeAt(0);
    if (ch === '\n' || ch === '\r')
      return refuse('a line break', 'is not available: one command per line, nothing ran');
    if ((code < 0x20 && ch !== '\t') || code === 0x7f)
      return refuse(
        `the control character U+${code.toString(16).padStart(4, '0').toUpperCase()}`,
        'is not allowed',
      );
    if (quote === "'") {
      if (ch === "'") quote = '';
      else word += ch;
      continue;
    }
    if (quote === '"') {
      if (ch === '"') quote = '';
      else if (ch === '\\') {
        const next = line[i + 1];
        if (next === undefined) break; // unterminated quote, reported below
        if (next === '"' || next === '\\' || next === '$' || next === '`') {
          word += next;
          i++;
        } else word += ch;
      } else if (ch === '$' || ch === '`' || ch === '!') return expansionRefusal(ch, line[i + 1]);
      else word += ch;
      continue;
    }
    if (ch === ' ' || ch === '\t') {
      end();
      continue;
    }
    if (ch === '#' && !inWord) break;
    if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
      continue;
    }
    if (ch === '\\') {
      const next = line[i + 1];
      if (next === undefined)
        return refuse('a backslash at the end of the line', 'is not available: one command per line');
      word += next;
      inWord = true;
      i++;
      continue;
    }
    if (ch === '$' || ch === '`' || ch === '!') return expansionRefusal(ch, line[i + 1]);
    const op = OPERATOR_REASONS[ch];
    if (op !== undefined) return refuse(op[0], op[1]);
    if (!inWord && words.length === 0 && ASSIGNMENT.test(line.slice(i)))
      return refuse(
        'setting an environment variable',
        'is not available: commands run with a fixed environment',
      );
    word += ch;
    inWord = true;
    if (words.length >= MAX_WORDS) return refuse(`more than ${MAX_WORDS} words`, 'on one line');
  }
  if (quote !== '')
    return refuse(
      `an unterminated ${quote === "'" ? 'single' : 'double'} quote`,
      'is not available: close the quote on the same line',
    );
  end();
  return { ok: true, words };
}
