/**
 * periscope-shell in mode kubectl as a real process under a real pseudo-terminal: the bundled
 * program, the real audit wrapper (symlinks named kubectl and helm, as in the image) and fake
 * "real" binaries that print what they were given. The real kubectl against a real apiserver is
 * exercised in e2e/web/kubectl-mode.int.spec.ts.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  bundledPrograms,
  tempDir,
  toolbox,
  underPty,
  writeExecutable,
  type Toolbox,
} from '../testing/processes';
import { MULTI_LINE_REFUSAL, PROMPT } from './prompt';

const ID = '6f1c1f0e-3a5b-4b8e-9d51-6a0f3c2b9e77';
const SHELL_NS = 'periscope-shells';

// kubectl's own editor handling: KUBE_EDITOR split on spaces, the file appended.
const FAKE_KUBECTL = `#!/bin/sh
if [ "$1" = edit ]; then
  f="$HOME/edit-$$.yaml"
  printf 'data:\\n  a: "1"\\n' > "$f"
  $KUBE_EDITOR "$f"
  echo "edited-file: $(tr '\\n' ' ' < "$f")"
  exit 0
fi
if [ "$1" = fail ]; then echo "error: failing on purpose" >&2; exit 3; fi
echo "fake-kubectl argv: $*"
echo "fake-kubectl env: diff=\${KUBECTL_EXTERNAL_DIFF-unset} shadow=\${KUBECTL_ENABLE_CMD_SHADOW-unset} editor=$KUBE_EDITOR path=$PATH kubeconfig=$KUBECONFIG plugins=$HELM_PLUGINS"
`;
const FAKE_HELM = `#!/bin/sh
echo "fake-helm argv: $* plugins=$HELM_PLUGINS"
`;

let dir: string;
let shell: string;
let tools: Toolbox;
let n = 0;

beforeAll(async () => {
  dir = tempDir('kubectl-mode');
  const built = await bundledPrograms(dir);
  shell = built['periscope-shell'];
  tools = toolbox(dir, built['periscope-audit-exec'], ['kubectl', 'helm']);
  writeExecutable(join(tools.realDir, 'kubectl-real'), FAKE_KUBECTL);
  writeExecutable(join(tools.realDir, 'helm-real'), FAKE_HELM);
  // A plugin on the pod's PATH that kubectl would find for an unknown subcommand.
  writeExecutable(join(tools.binDir, 'kubectl-evil'), '#!/bin/sh\necho PLUGIN-RAN\n');
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function kubectlEnv(): NodeJS.ProcessEnv & { PERISCOPE_SHELL_AUDIT_FILE: string } {
  return {
    PATH: `${tools.binDir}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
    HOME: dir,
    TERM: 'xterm',
    PERISCOPE_SHELL_SESSION_ID: ID,
    PERISCOPE_SHELL_MODE: 'kubectl',
    PERISCOPE_SHELL_NAMESPACE: SHELL_NS,
    PERISCOPE_SHELL_AUDIT_FILE: join(dir, `audit-${++n}`, 'audit.jsonl'),
    PERISCOPE_SHELL_TOOL_DIR: tools.binDir,
    PERISCOPE_AUDIT_EXEC_REAL_DIR: tools.realDir,
    // The pod's environment must not reach the tools.
    KUBECTL_EXTERNAL_DIFF: '/bin/echo EXTERNAL-DIFF-RAN',
    KUBECTL_ENABLE_CMD_SHADOW: 'true',
    HELM_PLUGINS: '/tmp/evil-plugins',
    KUBE_EDITOR: 'vi',
  };
}

function auditArgv(file: string): string[][] {
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { argv: string[] }).argv);
}

const prompt = { expect: PROMPT.replace(/[>]/g, '\\$&').trimEnd() };

describe('periscope-shell in mode kubectl', () => {
  it('runs kubectl (implied or named) and helm through the audit wrapper with a fixed environment', async () => {
    const env = kubectlEnv();
    const r = await underPty(
      [shell],
      [
        { expect: 'kubectl-only session' },
        prompt,
        { send: "get pods -A -o jsonpath='{.items[*].metadata.name}'\r" },
        { expect: 'fake-kubectl env: .*\\r?\\n' },
        prompt,
        { send: 'kubectl -n kube-system describe "pod/a b"\r' },
        { expect: 'fake-kubectl argv: -n kube-system describe pod/a b' },
        prompt,
        { send: 'helm list -A\r' },
        { expect: 'fake-helm argv: list -A' },
        prompt,
        { send: 'kubectl fail\r' },
        { expect: 'refused: "kubectl fail" is not available' },
        prompt,
        { send: 'exit 4\r' },
      ],
      env,
    );
    expect(r.timedOut, r.out.slice(-1500)).toBe(false);
    expect(r.code).toBe(4);
    expect(r.out).toContain('fake-kubectl argv: get pods -A -o jsonpath={.items[*].metadata.name}');
    expect(r.out).toContain(
      `fake-kubectl env: diff=unset shadow=unset editor=nano --restricted path=${tools.binDir}:/usr/bin:/bin kubeconfig=/etc/periscope/kubeconfig plugins=/dev/null/periscope-no-helm-plugins`,
    );
    expect(r.out).toContain('fake-helm argv: list -A plugins=/dev/null/periscope-no-helm-plugins');
    expect(auditArgv(env.PERISCOPE_SHELL_AUDIT_FILE)).toEqual([
      ['kubectl', 'get', 'pods', '-A', '-o', 'jsonpath={.items[*].metadata.name}'],
      ['kubectl', '-n', 'kube-system', 'describe', 'pod/a b'],
      ['helm', 'list', '-A'],
    ]);
  });

  // Each escape of the issue, typed at the prompt: a one-line refusal, nothing runs, the
  // session goes on.
  const escapes: [string, string][] = [
    ['ls /', 'refused: "ls" is not a kubectl command'],
    ['get pods | sh', 'refused: "|" (a pipe)'],
    ['get pods; id', 'refused: ";" (command list)'],
    ['get pods && id', 'refused: "&" (background job or "&&")'],
    ['get pods $(id)', 'refused: "$(" (command substitution)'],
    ['get pods `id`', 'refused: "`" (command substitution)'],
    ['!!', 'refused: "!" (history expansion)'],
    ['get pods > /tmp/x', 'refused: ">" (redirection)'],
    ['KUBECTL_EXTERNAL_DIFF=/bin/sh diff -f x', 'refused: setting an environment variable'],
    ['get pods --kubeconfig=/etc/passwd', 'refused: --kubeconfig:'],
    ['get pods --token abc', 'refused: --token:'],
    ['get pods -s https://x', 'refused: -s (--server)'],
    ['kubectl plugin list', 'refused: "kubectl plugin" is not available'],
    ['kubectl evil', 'refused: "kubectl evil" is not available'],
    ['helm plugin list', 'refused: "helm plugin" is not available'],
    ['helm install x y --post-renderer /bin/sh', 'refused: --post-renderer:'],
    [`exec -it periscope-shell-${ID} -- bash`, `refused: "kubectl exec" into periscope-shell-${ID}`],
    [
      `debug -it periscope-shell-${ID} --image=busybox`,
      `refused: "kubectl debug" into periscope-shell-${ID}`,
    ],
    ['exec -it web-0 -n periscope-shells -- sh', 'refused: "kubectl exec" in namespace periscope-shells'],
    ['cp x:/a /tmp/b', 'refused: "kubectl cp" is not available'],
  ];
  it('refuses every escape with a message and runs nothing', async () => {
    const env = kubectlEnv();
    const steps = escapes.flatMap(([line, message]) => [
      { send: `${line}\r` },
      { expect: message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') },
      prompt,
    ]);
    const r = await underPty(
      [shell],
      [
        prompt,
        ...steps,
        { send: 'get ns\r' },
        { expect: 'fake-kubectl argv: get ns' },
        prompt,
        { send: '\x04' },
      ],
      env,
    );
    expect(r.timedOut, r.out.slice(-1500)).toBe(false);
    expect(r.code).toBe(0);
    expect(r.out).not.toContain('PLUGIN-RAN');
    expect(r.out).not.toContain('EXTERNAL-DIFF-RAN');
    // Only the one allowed call reached the wrapper.
    expect(auditArgv(env.PERISCOPE_SHELL_AUDIT_FILE)).toEqual([['kubectl', 'get', 'ns']]);
  });

  it('runs nothing of a multi-line paste, bracketed or not', async () => {
    const env = kubectlEnv();
    const r = await underPty(
      [shell],
      [
        prompt,
        // a terminal without bracketed paste: several lines in one burst
        { send: 'get ns\rget pods\r' },
        { expect: 'refused: the input holds more than one line' },
        prompt,
        // a line with more text behind it
        { send: 'get ns\rget po' },
        { expect: 'refused: the input holds more than one line' },
        prompt,
        // xterm's bracketed paste (the browser terminal): any line break in the paste
        { send: '\x1b[200~get ns\rget pods\x1b[201~' },
        { expect: 'refused: the input holds more than one line' },
        prompt,
        { send: '\x1b[200~get configmaps\x1b[201~' },
        { sleep: 0.2 },
        { send: '\r' },
        { expect: 'fake-kubectl argv: get configmaps' },
        prompt,
        { send: 'exit\r' },
      ],
      env,
    );
    expect(r.timedOut, r.out.slice(-1500)).toBe(false);
    expect(r.code).toBe(0);
    expect(r.out).toContain(MULTI_LINE_REFUSAL);
    expect(auditArgv(env.PERISCOPE_SHELL_AUDIT_FILE)).toEqual([['kubectl', 'get', 'configmaps']]);
  });

  it('gives the terminal to the command: Ctrl-C stops it, not the session; Ctrl-C at the prompt clears the line', async () => {
    writeExecutable(
      join(tools.realDir, 'kubectl-real'),
      `#!/bin/sh\nif [ "$1" = logs ]; then echo following; sleep 30; echo not-reached; exit 0; fi\n${FAKE_KUBECTL.replace('#!/bin/sh\n', '')}`,
    );
    const env = kubectlEnv();
    const r = await underPty(
      [shell],
      [
        prompt,
        { send: 'logs -f web\r' },
        { expect: 'following' },
        { sleep: 0.3 },
        { send: '\x03' },
        prompt,
        { send: 'get half-typed' },
        { send: '\x03' },
        { expect: '\\^C' },
        prompt,
        { send: 'get ns\r' },
        { expect: 'fake-kubectl argv: get ns\\r' },
        prompt,
        { send: 'exit\r' },
      ],
      env,
    );
    expect(r.timedOut, r.out.slice(-1500)).toBe(false);
    expect(r.code).toBe(0);
    expect(r.out).not.toContain('not-reached');
    const audit = readFileSync(env.PERISCOPE_SHELL_AUDIT_FILE, 'utf8').trim().split('\n');
    expect(audit.map((l) => JSON.parse(l) as { argv: string[]; exit_code: number })).toMatchObject([
      { argv: ['kubectl', 'logs', '-f', 'web'], exit_code: 130 },
      { argv: ['kubectl', 'get', 'ns'], exit_code: 0 },
    ]);
    writeExecutable(join(tools.realDir, 'kubectl-real'), FAKE_KUBECTL);
  });

  it('kubectl edit opens nano in restricted mode: it saves the file but runs and reads nothing else', async () => {
    const env = kubectlEnv();
    const r = await underPty(
      [shell],
      [
        prompt,
        // ^R (insert another file) is refused by restricted nano; ^X leaves (nothing changed)
        { send: 'edit configmap/x\r' },
        { expect: 'Read 2 lines' },
        { sleep: 0.3 },
        { send: '\x12' },
        { expect: 'This function is disabled in restricted mode' },
        { send: '\x18' },
        { expect: 'edited-file: data:' },
        prompt,
        // ^T (execute a command) is refused too; the edit itself is saved with ^O Enter, ^X
        { send: 'edit configmap/x\r' },
        { expect: 'Read 2 lines' },
        { sleep: 0.3 },
        { send: '\x14' },
        { expect: 'This function is disabled in restricted mode' },
        { send: '\x1b[B\x1b[Bb: "2"' }, // down twice, type a new line
        { send: '\x0f' },
        { expect: 'File Name to Write' },
        { send: '\r' },
        { sleep: 0.3 },
        { send: '\x18' },
        { expect: 'edited-file: data:' },
        prompt,
        { send: 'exit\r' },
      ],
      env,
    );
    expect(r.timedOut, r.out.slice(-1500)).toBe(false);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/edited-file: data: {3}a: "1" b: "2"/);
    expect(auditArgv(env.PERISCOPE_SHELL_AUDIT_FILE)).toEqual([
      ['kubectl', 'edit', 'configmap/x'],
      ['kubectl', 'edit', 'configmap/x'],
    ]);
  });

  it('prints help, keeps history, and completes subcommands with Tab', async () => {
    const env = kubectlEnv();
    const r = await underPty(
      [shell],
      [
        prompt,
        { send: 'help\r' },
        { expect: 'kubectl commands: ' },
        prompt,
        { send: 'get nodes\r' },
        { expect: 'fake-kubectl argv: get nodes' },
        prompt,
        { send: '\x1b[A\r' }, // up arrow: the last line again
        { expect: 'fake-kubectl argv: get nodes' },
        prompt,
        // readline completes a Tab only when it arrives as a key of its own
        { send: 'descr' },
        { sleep: 0.1 },
        { send: '\t' },
        { sleep: 0.2 },
        { send: 'pods\r' },
        { expect: 'fake-kubectl argv: describe pods' },
        prompt,
        { send: 'history\r' },
        { expect: '1  help' },
        prompt,
        { send: 'exit\r' },
      ],
      env,
    );
    expect(r.timedOut, r.out.slice(-1500)).toBe(false);
    expect(r.code).toBe(0);
    expect(auditArgv(env.PERISCOPE_SHELL_AUDIT_FILE)).toEqual([
      ['kubectl', 'get', 'nodes'],
      ['kubectl', 'get', 'nodes'],
      ['kubectl', 'describe', 'pods'],
    ]);
  });
});
