import { chmodSync, existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  bundledPrograms,
  run,
  tempDir,
  toolbox,
  underPty,
  until,
  writeExecutable,
  type Toolbox,
} from '../testing/processes';
import { AUDITED_TOOLS } from './allow-list';

/** Width of `"exit_code":…,"duration_ms":…` padded with spaces (RESULT_WIDTH in the C source). */
const RESULT_WIDTH = 48;

/** A stand-in for kubectl-real / helm-real: a shell script whose first argument picks a behaviour. */
const FAKE_TOOL = `#!/bin/sh
case "$1" in
  cat) exec cat ;;
  exit) exit "$2" ;;
  trap-int)
    n=0
    trap 'n=$((n+1)); echo "got SIGINT $n"; sleep 0.3; exit 130' INT
    echo ready
    while :; do sleep 0.05; done ;;
  die-on-int) echo ready; exec sleep 30 ;;
  die-of) kill -s "$2" $$; sleep 5 ;;
  ignored-int) kill -s INT $$; kill -s INT "$PPID"; echo "survived"; exit 0 ;;
  replace-audit) printf 'someone else\n%.0s' 1 2 3 4 5 6 7 8 9 10 > "$PERISCOPE_SHELL_AUDIT_FILE"; exit 0 ;;
  trap-term)
    trap 'echo "got SIGTERM"; exit 143' TERM
    echo ready
    while :; do sleep 0.05; done ;;
esac
printf 'tool=%s argc=%s ppid=%s\\n' "$(basename "$0")" "$#" "$PPID"
for a in "$@"; do printf '<%s>\\n' "$a"; done
`;

interface AuditLine {
  timestamp: string;
  pid: number;
  argv: string[];
  exit_code: number | null;
  duration_ms: number | null;
}

let dir: string;
let wrapper: string;
let shell: string;
let box: Toolbox;
let auditFile: string;
let n = 0;

beforeAll(async () => {
  dir = tempDir('audit-exec');
  const programs = await bundledPrograms(dir);
  wrapper = programs['periscope-audit-exec'];
  shell = programs['periscope-shell'];
  box = toolbox(dir, wrapper);
  writeExecutable(join(box.realDir, 'kubectl-real'), FAKE_TOOL);
  writeExecutable(join(box.realDir, 'helm-real'), FAKE_TOOL);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Environment of one call: its own audit file, the fake real binaries. */
function envFor(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  auditFile = join(dir, `audit-${++n}`, 'audit.jsonl');
  return {
    PATH: process.env['PATH'],
    PERISCOPE_AUDIT_EXEC_REAL_DIR: box.realDir,
    PERISCOPE_SHELL_AUDIT_FILE: auditFile,
    ...extra,
  };
}

function auditLines(file = auditFile): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').slice(0, -1);
}

function audit(file = auditFile): AuditLine[] {
  return auditLines(file).map((l) => JSON.parse(l) as AuditLine);
}

const tool = (name: string): string => join(box.binDir, name);

describe('periscope-audit-exec', () => {
  it('dispatches on the name it was called by, with the exact arguments', async () => {
    const args = ['get', 'pods', '-l', 'app=a b', '', 'ünïcødé ✓ 日本', 'line\nbreak', '"quoted"', '$HOME'];
    const k = await run(tool('kubectl'), args, { env: envFor() });
    expect(k.stderr).toBe('');
    expect(k.code).toBe(0);
    expect(k.stdout).toMatch(/^tool=kubectl-real argc=9 /);
    expect(k.stdout).toContain(args.map((a) => `<${a}>`).join('\n'));

    const h = await run(tool('helm'), ['version', '--short'], { env: envFor() });
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^tool=helm-real argc=2 /);
  });

  it('keeps argv[0] for the real binary', async () => {
    const box2 = toolbox(join(dir, 'argv0'), wrapper, ['kubectl']);
    symlinkSync('/bin/bash', join(box2.realDir, 'kubectl-real'));
    const r = await run(join(box2.binDir, 'kubectl'), ['-c', 'echo "argv0=$0"'], {
      env: { ...envFor(), PERISCOPE_AUDIT_EXEC_REAL_DIR: box2.realDir },
    });
    expect(r.stdout).toBe('argv0=kubectl\n');
  });

  it('passes stdin through', async () => {
    const r = await run(tool('kubectl'), ['cat'], { env: envFor(), input: 'apiVersion: v1\nkind: List\n' });
    expect(r.stdout).toBe('apiVersion: v1\nkind: List\n');
  });

  it.each([0, 1, 3, 42, 255])('exits with the real binary exit code %i and records it', async (code) => {
    const r = await run(tool('kubectl'), ['exit', String(code)], { env: envFor() });
    expect(r.code).toBe(code);
    expect(audit()).toMatchObject([{ argv: ['kubectl', 'exit', String(code)], exit_code: code }]);
  });

  it('refuses a name that is not on the allow-list with 127, and records nothing', async () => {
    const env = envFor();
    const oc = await run(tool('oc'), ['get', 'pods'], { env });
    expect(oc.code).toBe(127);
    expect(oc.stdout).toBe('');
    expect(oc.stderr).toBe(
      'periscope-audit-exec: "oc" is not an audited tool (allowed: kubectl, helm); call it through its symlink, e.g. /usr/local/bin/kubectl\n',
    );
    const direct = await run(wrapper, ['get', 'pods'], { env });
    expect(direct.code).toBe(127);
    expect(direct.stderr).toContain('"periscope-audit-exec" is not an audited tool');
    expect(existsSync(auditFile)).toBe(false);
  });

  it('exits 126 when the real binary is missing or not executable, and records the attempt', async () => {
    const missing = toolbox(join(dir, 'missing'), wrapper, ['kubectl', 'helm']);
    writeFileSync(join(missing.realDir, 'helm-real'), '#!/bin/sh\necho never\n');
    chmodSync(join(missing.realDir, 'helm-real'), 0o644);
    const env = { ...envFor(), PERISCOPE_AUDIT_EXEC_REAL_DIR: missing.realDir };

    const k = await run(join(missing.binDir, 'kubectl'), ['get', 'ns'], { env });
    expect(k.code).toBe(126);
    expect(k.stderr).toMatch(
      /^periscope-audit-exec: cannot run .*\/kubectl-real: No such file or directory \(ENOENT\)\n$/,
    );

    const h = await run(join(missing.binDir, 'helm'), ['list'], { env });
    expect(h.code).toBe(126);
    expect(h.stdout).toBe('');
    expect(h.stderr).toMatch(/cannot run .*\/helm-real: Permission denied \(EACCES\)/);

    expect(audit()).toMatchObject([
      { argv: ['kubectl', 'get', 'ns'], exit_code: 126 },
      { argv: ['helm', 'list'], exit_code: 126 },
    ]);
  });

  it('writes exactly one JSON line per call: timestamp, pid, argv, exit_code, duration_ms', async () => {
    const env = envFor();
    const before = Date.now();
    const first = await run(tool('kubectl'), ['get', 'ns', 'a b', 'ünï ✓'], { env });
    const second = await run(tool('helm'), ['exit', '2'], { env });
    const after = Date.now();
    expect(second.code).toBe(2);

    const raw = auditLines();
    expect(raw).toHaveLength(2);
    const shape =
      /^\{"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","pid":\d+,"argv":\[.*\],"exit_code":\d+,"duration_ms":\d+ *\}$/;
    for (const line of raw) expect(line).toMatch(shape);
    // The result fields keep a fixed width, so the line never changes length when completed.
    expect(raw[0]!.slice(raw[0]!.indexOf('"exit_code"'), -1)).toHaveLength(RESULT_WIDTH);
    expect(raw[0]).toContain('"argv":["kubectl","get","ns","a b","ünï ✓"]');

    const [a, b] = audit();
    expect(Object.keys(a!)).toEqual(['timestamp', 'pid', 'argv', 'exit_code', 'duration_ms']);
    expect(a!.argv).toEqual(['kubectl', 'get', 'ns', 'a b', 'ünï ✓']);
    expect(a!.exit_code).toBe(0);
    // The recorded pid is the wrapper's: the real binary's parent.
    expect(first.stdout).toContain(`ppid=${a!.pid}\n`);
    expect(b!.argv).toEqual(['helm', 'exit', '2']);
    expect(b!.exit_code).toBe(2);
    for (const line of [a!, b!]) {
      expect(Date.parse(line.timestamp)).toBeGreaterThanOrEqual(before - 5);
      expect(Date.parse(line.timestamp)).toBeLessThanOrEqual(after);
      expect(line.duration_ms).toBeGreaterThanOrEqual(0);
      expect(line.duration_ms).toBeLessThan(after - before + 5);
    }
    expect(readFileSync(auditFile, 'utf8').endsWith('}\n')).toBe(true);
  });

  it('keeps one complete line per call when calls run concurrently', async () => {
    const env = envFor();
    const calls = Array.from({ length: 16 }, (_, i) =>
      run(tool(i % 2 === 0 ? 'kubectl' : 'helm'), ['exit', String(i)], { env }),
    );
    const results = await Promise.all(calls);
    expect(results.map((r) => r.code)).toEqual(Array.from({ length: 16 }, (_, i) => i));
    const lines = audit();
    expect(lines).toHaveLength(16);
    for (const line of lines) expect(line.exit_code).toBe(Number(line.argv[2]));
  });

  it('still runs the command when the audit file cannot be written, with one warning', async () => {
    const notADir = join(dir, 'not-a-dir');
    writeFileSync(notADir, 'a file where a directory should be');
    const r = await run(tool('kubectl'), ['exit', '4'], {
      env: envFor({ PERISCOPE_SHELL_AUDIT_FILE: join(notADir, 'audit.jsonl') }),
    });
    expect(r.code).toBe(4);
    const warnings = r.stderr.split('\n').filter((l) => l !== '');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /^periscope-audit-exec: warning: cannot write the audit record to .*not-a-dir\/audit\.jsonl: .* \(the command runs anyway\)$/,
    );
    const out = await run(tool('kubectl'), ['x y'], {
      env: envFor({ PERISCOPE_SHELL_AUDIT_FILE: join(notADir, 'audit.jsonl') }),
    });
    expect(out.stdout).toContain('<x y>');
  });

  it('allows exactly the tools of allow-list.ts (the C list and the TypeScript list agree)', async () => {
    const r = await run(tool('oc'), [], { env: envFor() });
    expect(r.stderr).toContain(`(allowed: ${AUDITED_TOOLS.join(', ')})`);
  });

  it('dispatches on the path it was executed by, not on the argv[0] a caller chose', async () => {
    const env = envFor();
    const renamed = await run('bash', ['--norc', '-c', `exec -a oc ${tool('kubectl')} exit 0`], { env });
    expect(renamed.code).toBe(0);
    const disguised = await run('bash', ['--norc', '-c', `exec -a kubectl ${tool('oc')} exit 0`], { env });
    expect(disguised.code).toBe(127);
    expect(audit()).toMatchObject([{ argv: ['kubectl', 'exit', '0'], exit_code: 0 }]);
  });

  /** Arguments as bytes (not only UTF-8): bash's $'\ooo' quoting passes any byte but NUL. */
  const EDGE_ARGS: Buffer[] = [
    'say "hi" \\ \'single\' `tick` $HOME',
    'line\nbreak\r\n\ttab\n',
    'ünïcødé ✓ 日本 😀 \u2028\u2029 </script>&',
    Array.from({ length: 31 }, (_, i) => String.fromCharCode(i + 1)).join('') + '\x7f',
    '',
    'x'.repeat(5_000),
  ]
    .map((a) => Buffer.from(a))
    .concat([
      // invalid UTF-8: a lone continuation byte, an encoded surrogate, an overlong form, a cut
      // sequence, a code point past U+10FFFF, bytes that never occur in UTF-8, a cut 4-byte form
      Buffer.from([0x61, 0x80, 0x62, 0xed, 0xa0, 0x80, 0xc0, 0xaf, 0xe2, 0x82, 0x20, 0xf4, 0x90, 0x80, 0x80]),
      Buffer.from([0xff, 0xfe, 0xf0, 0x9f, 0x98]),
    ]);
  const bashWord = (a: Buffer): string =>
    `$'${[...a].map((b) => `\\${b.toString(8).padStart(3, '0')}`).join('')}'`;

  it('records any argument as JSON.stringify writes the string Node decodes, read back by read-audit', async () => {
    const env = envFor();
    const r = await run(
      'bash',
      ['--norc', '-c', `exec ${tool('kubectl')} ${EDGE_ARGS.map(bashWord).join(' ')}`],
      { env },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const expected = ['kubectl', ...EDGE_ARGS.map((a) => a.toString('utf8'))];

    const read = await run(shell, ['read-audit', auditFile, '1000000'], {
      env: { PATH: process.env['PATH'] },
    });
    expect(read.code).toBe(0);
    const lines = read.stdout.split('\n').slice(0, -1);
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]!) as AuditLine;
    expect(entry.argv).toEqual(expected);
    // Byte for byte the line the former Node wrapper wrote (JSON.stringify's escaping).
    const head = JSON.stringify({ timestamp: entry.timestamp, pid: entry.pid, argv: expected });
    const fields = `"exit_code":0,"duration_ms":${String(entry.duration_ms)}`.padEnd(RESULT_WIDTH);
    expect(lines[0]).toBe(`${head.slice(0, -1)},${fields}}`);
  });

  it('leaves the file alone and warns once when the file was replaced during the call', async () => {
    const env = envFor();
    const r = await run(tool('kubectl'), ['replace-audit'], { env });
    expect(r.code).toBe(0);
    expect(readFileSync(auditFile, 'utf8')).toBe('someone else\n'.repeat(10));
    expect(r.stderr).toBe(
      `periscope-audit-exec: warning: cannot record the exit code in ${auditFile}: the file changed under us (truncated or replaced) (the command runs anyway)\n`,
    );
  });

  it('dies of the signal that killed the real binary and records 128 + N', async () => {
    const env = envFor();
    const killed = await run(tool('kubectl'), ['die-of', 'KILL'], { env });
    expect(killed.signal).toBe('SIGKILL');
    const termed = await run(tool('helm'), ['die-of', 'TERM'], { env });
    expect(termed.signal).toBe('SIGTERM');
    expect(audit()).toMatchObject([{ exit_code: 137 }, { exit_code: 143 }]);
  });

  it('keeps a SIGINT the caller ignores (a background job) ignored, for itself and the tool', async () => {
    const env = envFor();
    const r = await run('bash', ['--norc', '-c', `trap '' INT; ${tool('kubectl')} ignored-int`], { env });
    expect(r.stdout).toBe('survived\n');
    expect(r.code).toBe(0);
    expect(audit()).toMatchObject([{ argv: ['kubectl', 'ignored-int'], exit_code: 0 }]);
  });

  describe('signals', () => {
    it('Ctrl-C on a terminal reaches the real binary once and the wrapper records how it ended', async () => {
      const env = envFor();
      const r = await underPty(
        [tool('kubectl'), 'trap-int'],
        [{ expect: 'ready' }, { send: '\x03' }, { expect: 'got SIGINT 1' }],
        env,
      );
      expect(r).toMatchObject({ timedOut: false, code: 130, signal: null });
      expect(r.out).not.toContain('got SIGINT 2');
      expect(r.code).toBe(130);
      expect(audit()).toMatchObject([{ argv: ['kubectl', 'trap-int'], exit_code: 130 }]);
      expect(audit()[0]!.duration_ms).toBeGreaterThanOrEqual(300);
    });

    it('dies of SIGINT like the real binary did, after recording 130', async () => {
      const env = envFor();
      const r = await underPty(
        [tool('kubectl'), 'die-on-int'],
        [{ expect: 'ready' }, { sleep: 0.1 }, { send: '\x03' }],
        env,
      );
      expect(r.timedOut).toBe(false);
      expect(r.signal).toBe(2);
      expect(audit()).toMatchObject([{ argv: ['kubectl', 'die-on-int'], exit_code: 130 }]);
    });

    it('passes SIGTERM on to the real binary', async () => {
      const env = envFor();
      const p = run(tool('kubectl'), ['trap-term'], { env });
      await until('the fake tool to start', () => p.output().includes('ready'));
      p.kill('SIGTERM');
      const r = await p;
      expect(r.stdout).toContain('got SIGTERM');
      expect(r.code).toBe(143);
      expect(audit()).toMatchObject([{ exit_code: 143 }]);
    });

    it('passes on a SIGINT sent to the wrapper alone (no terminal)', async () => {
      const env = envFor();
      const p = run(tool('kubectl'), ['trap-int'], { env, detached: true });
      await until('the fake tool to start', () => p.output().includes('ready'));
      process.kill(p.pid()!, 'SIGINT');
      const r = await p;
      expect(r.stdout).toContain('got SIGINT 1');
      expect(r.stdout).not.toContain('got SIGINT 2');
      expect(r.code).toBe(130);
      expect(audit()).toMatchObject([{ exit_code: 130 }]);
    });
  });
});
