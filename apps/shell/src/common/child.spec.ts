import { describe, expect, it } from 'vitest';

import { exitCodeForSignal, inTerminalForegroundGroup } from './child';

describe('inTerminalForegroundGroup', () => {
  // pid (comm) state ppid pgrp session tty_nr tpgid …
  it('is true when the terminal foreground group is ours', () => {
    expect(inTerminalForegroundGroup('123 (node) S 1 123 123 34816 123 4194560 0 0')).toBe(true);
  });

  it('is false in a background group or without a terminal', () => {
    expect(inTerminalForegroundGroup('123 (node) S 1 123 100 34816 100 4194560')).toBe(false);
    expect(inTerminalForegroundGroup('123 (node) S 1 123 123 0 -1 4194560')).toBe(false);
  });

  it('reads a command name with spaces and parentheses', () => {
    expect(inTerminalForegroundGroup('77 (a (b) c) S 1 77 77 34816 77 0')).toBe(true);
  });

  it('assumes a terminal when it cannot tell, so a child never gets Ctrl-C twice', () => {
    expect(inTerminalForegroundGroup('garbage')).toBe(true);
  });
});

describe('exitCodeForSignal', () => {
  it('follows the shell convention 128 + N', () => {
    expect(exitCodeForSignal('SIGINT')).toBe(130);
    expect(exitCodeForSignal('SIGTERM')).toBe(143);
    expect(exitCodeForSignal('SIGPIPE')).toBe(141);
  });
});
