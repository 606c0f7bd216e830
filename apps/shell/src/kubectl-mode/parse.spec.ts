import { describe, expect, it } from 'vitest';

import { MAX_LINE_CHARS, parseLine } from './parse';

describe(parseLine.name, () => {
  it.each<[string, string[]]>([
    ['get pods', ['get', 'pods']],
    ['  get   pods\t-A  ', ['get', 'pods', '-A']],
    ['', []],
    ['   ', []],
    ['# only a comment', []],
    ['get pods # trailing comment', ['get', 'pods']],
    ['get pods a#b', ['get', 'pods', 'a#b']],
    [
      "get pods -o jsonpath='{.items[*].metadata.name}'",
      ['get', 'pods', '-o', 'jsonpath={.items[*].metadata.name}'],
    ],
    [
      'get pods -o jsonpath={.items[*].metadata.name}',
      ['get', 'pods', '-o', 'jsonpath={.items[*].metadata.name}'],
    ],
    ['annotate pod x "note=two words"', ['annotate', 'pod', 'x', 'note=two words']],
    ["annotate pod x 'a=$(id) `id` !x; | > <'", ['annotate', 'pod', 'x', 'a=$(id) `id` !x; | > <']],
    ['annotate pod x "q=\\"in\\" \\\\ \\$HOME \\`"', ['annotate', 'pod', 'x', 'q="in" \\ $HOME `']],
    ['annotate pod x "keep=\\n"', ['annotate', 'pod', 'x', 'keep=\\n']],
    ['annotate pod x a\\ b \\; \\| \\$ \\!', ['annotate', 'pod', 'x', 'a b', ';', '|', '$', '!']],
    ['get pods -l app=web,tier!=db'.replace('!', ''), ['get', 'pods', '-l', 'app=web,tier=db']],
    ['annotate pod x ""', ['annotate', 'pod', 'x', '']],
    ['a\'\'b c""d', ['ab', 'cd']],
    ['get pods -o=yaml', ['get', 'pods', '-o=yaml']],
    ['get ~ * ?', ['get', '~', '*', '?']],
  ])('splits %j', (line, words) => {
    expect(parseLine(line)).toEqual({ ok: true, words });
  });

  // Every shell feature beyond quoting is refused, each with a message naming it.
  it.each<[string, string]>([
    ['get pods | grep x', '"|" (a pipe)'],
    ['get pods || id', '"|" (a pipe)'],
    ['get pods && id', '"&" (background job or "&&")'],
    ['get pods &', '"&" (background job or "&&")'],
    ['get pods; id', '";" (command list)'],
    ['get pods > /tmp/x', '">" (redirection)'],
    ['get pods >> /tmp/periscope-shell/audit.jsonl', '">" (redirection)'],
    ['apply -f - < /etc/passwd', '"<" (redirection)'],
    ['get pods 2>&1', '">" (redirection)'],
    ['(id)', '"(" (subshell)'],
    ['get pods $(id)', '"$(" (command substitution)'],
    ['get pods "$(id)"', '"$(" (command substitution)'],
    ['get pods `id`', '"`" (command substitution)'],
    ['get pods "`id`"', '"`" (command substitution)'],
    ['get pods $HOME', '"$" (variable expansion)'],
    ['get pods "${HOME}"', '"$" (variable expansion)'],
    ['get pods $', '"$" (variable expansion)'],
    ['!!', '"!" (history expansion)'],
    ['get !-1', '"!" (history expansion)'],
    ['get pods "!x"', '"!" (history expansion)'],
    ['FOO=bar kubectl get pods', 'setting an environment variable'],
    ['KUBECTL_EXTERNAL_DIFF=/bin/sh diff -f x', 'setting an environment variable'],
    ['PATH+=/tmp get pods', 'setting an environment variable'],
    ['get pods\nid', 'a line break'],
    ['get pods\rid', 'a line break'],
    ['get pods \\', 'a backslash at the end of the line'],
    ["get pods 'open", 'an unterminated single quote'],
    ['get pods "open', 'an unterminated double quote'],
    ['get pods \x1b[A', 'the control character U+001B'],
    ['get pods \x00', 'the control character U+0000'],
    ['x'.repeat(MAX_LINE_CHARS + 1), `a line of ${MAX_LINE_CHARS + 1} characters`],
    ['get ' + 'a '.repeat(300), 'more than 256 words'],
  ])('refuses %j', (line, what) => {
    const r = parseLine(line);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toMatch(/^refused: /);
    expect(r.message).toContain(what);
    expect(r.message).toContain('"help" lists what is allowed');
    expect(r.message).not.toContain('\n');
  });
});
