import { redactArgv } from '../cluster-shell/argv-redaction';

/**
 * Input recording (mode `output+input`): keystrokes are collected per line and written as one
 * `i` event when the line is entered, through the command log's redaction (argv-redaction.ts),
 * never raw. A line is written only when the terminal echoed it: the server cannot read the
 * pty's echo flag, so it compares what was typed with what the terminal printed while the line
 * was typed and up to ECHO_WAIT_MS after Enter. A line that did not come back (a password prompt,
 * `read -s`, `stty -echo`) is replaced by a marker. Editing keys are applied (backspace, Ctrl-U,
 * Ctrl-C drops the line); cursor keys, tab completion and other escape sequences are not
 * recorded (the output shows their effect).
 */

/** Characters kept per line; longer lines are cut (the output has them anyway). */
export const MAX_LINE_CHARS = 4096;
/** How long after Enter the echo may still arrive (a pasted line is echoed after it is sent). */
export const ECHO_WAIT_MS = 500;
/** Output kept per line for the echo check (the tail). */
const MAX_ECHO_CHARS = 64 * 1024;
/** Entered lines waiting for their echo; more are decided at once (as not echoed). */
const MAX_PENDING = 16;

// CSI and OSC sequences, and the two-character escapes.
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

export type InputDecision = { kind: 'line'; text: string } | { kind: 'hidden' };

interface Pending {
  typed: string;
  echo: string;
  deadline: number;
}

/** What the terminal shows of some output: escapes removed, backspaces applied. */
export function visibleText(s: string): string {
  const out: string[] = [];
  for (const ch of s.replace(ANSI, '')) {
    if (ch === '\b') out.pop();
    else if (ch !== '\x07') out.push(ch);
  }
  return out.join('');
}

/** Splits a command line as a shell would (quotes and backslashes), for redaction. */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let has = false;
  let quote: '' | "'" | '"' = '';
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] ?? '';
    if (quote) {
      if (ch === quote) quote = '';
      else if (ch === '\\' && quote === '"' && i + 1 < line.length) cur += line[++i] ?? '';
      else cur += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      has = true;
    } else if (ch === '\\' && i + 1 < line.length) {
      cur += line[++i] ?? '';
      has = true;
    } else if (/\s/.test(ch)) {
      if (has || cur !== '') words.push(cur);
      cur = '';
      has = false;
    } else {
      cur += ch;
    }
  }
  if (has || cur !== '') words.push(cur);
  return words;
}

/** The line as stored: redacted by the command log's rules when any value reads as a secret. */
export function redactLine(line: string): string {
  const words = shellWords(line);
  if (words.length === 0) return line;
  const r = redactArgv(words);
  return r.redacted ? r.argv.join(' ') : line;
}

export class InputLines {
  private typed = '';
  private echo = '';
  private inEscape = false;
  private readonly pending: Pending[] = [];

  constructor(private readonly decide: (d: InputDecision) => void) {}

  /** Keystrokes from the browser (already UTF-8 text). */
  keys(text: string, now: number): void {
    for (const ch of text) {
      if (this.inEscape) {
        // An escape sequence (cursor keys, function keys) ends with a letter or ~.
        if (/[A-Za-z~]/.test(ch)) this.inEscape = false;
        continue;
      }
      if (ch === '\x1b') this.inEscape = true;
      else if (ch === '\r' || ch === '\n') this.enter(now);
      else if (ch === '\x7f' || ch === '\b') this.typed = dropLast(this.typed);
      else if (ch === '\x15' || ch === '\x03')
        this.reset(); // Ctrl-U, Ctrl-C
      else if (ch >= ' ' && this.typed.length < MAX_LINE_CHARS) this.typed += ch;
    }
    this.settle(now);
  }

  /** Output of the terminal (text); feeds the echo check. */
  output(text: string, now: number): void {
    // Lines whose wait is over are decided on what came before this output.
    this.settle(now);
    if (this.typed !== '') this.echo = tail(this.echo + text);
    for (const p of this.pending) p.echo = tail(p.echo + text);
    this.settle(now);
  }

  /** Decides every line whose echo wait is over (all of them when `final`). */
  settle(now: number, final = false): void {
    while (this.pending.length > 0) {
      const p = this.pending[0];
      if (!p) break;
      const echoed = visibleText(p.echo).includes(p.typed);
      if (!echoed && !final && now < p.deadline) break;
      this.pending.shift();
      this.decide(echoed ? { kind: 'line', text: redactLine(p.typed) } : { kind: 'hidden' });
    }
  }

  get waiting(): boolean {
    return this.pending.length > 0;
  }

  /** Whether output matters now (a line is being typed or waits for its echo); else output() does nothing. */
  get listening(): boolean {
    return this.typed !== '' || this.pending.length > 0;
  }

  private enter(now: number): void {
    const typed = this.typed;
    const echo = this.echo;
    this.reset();
    if (typed.trim() === '') return;
    if (this.pending.length >= MAX_PENDING) this.settle(now, true);
    this.pending.push({ typed, echo, deadline: now + ECHO_WAIT_MS });
  }

  private reset(): void {
    this.typed = '';
    this.echo = '';
  }
}

/** The line without its last character (a whole code point; the shell's backspace). */
function dropLast(s: string): string {
  const end = s.length - 1;
  if (end < 0) return s;
  const low = s.charCodeAt(end);
  return s.slice(0, low >= 0xdc00 && low <= 0xdfff && end > 0 ? end - 1 : end);
}

const tail = (s: string): string => (s.length > MAX_ECHO_CHARS ? s.slice(-MAX_ECHO_CHARS) : s);
