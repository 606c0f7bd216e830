import { existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { bundledPrograms, run, tempDir, underPty, until } from '../testing/processes';

const ID = '6f1c1f0e-3a5b-4b8e-9d51-6a0f3c2b9e77';

let dir: string;
let shell: string;
let n = 0;

beforeAll(async () => {
  dir = tempDir('shell');
  shell = (await bundledPrograms(dir))['periscope-shell'];
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function sessionEnv(
  extra: NodeJS.ProcessEnv = {},
): NodeJS.ProcessEnv & { PERISCOPE_SHELL_AUDIT_FILE: string } {
  const home = join(dir, `home-${++n}`);
  return {
    PATH: process.env['PATH'],
    HOME: dir,
    TERM: 'xterm',
    PERISCOPE_SHELL_SESSION_ID: ID,
    PERISCOPE_SHELL_MODE: 'bash',
    PERISCOPE_SHELL_AUDIT_FILE: join(home, 'audit', 'audit.jsonl'),
    ...extra,
  };
}

describe('periscope-shell', () => {
  it('refuses to start without a session id, saying why', async () => {
    const env = sessionEnv();
    delete env['PERISCOPE_SHELL_SESSION_ID'];
    for (const args of [[], ['hold']]) {
      const r = await run(shell, args, { env });
      expect(r.code).toBe(78);
      expect(r.stderr).toBe(
        'periscope-shell: PERISCOPE_SHELL_SESSION_ID is not set: this program runs in a Periscope session pod, which sets it\n',
      );
    }
  });

  it('refuses an unsupported mode', async () => {
    const unknown = await run(shell, ['hold'], { env: sessionEnv({ PERISCOPE_SHELL_MODE: 'fish' }) });
    expect(unknown.code).toBe(78);
    expect(unknown.stderr).toBe(
      'periscope-shell: PERISCOPE_SHELL_MODE "fish" is not supported (supported: bash, kubectl)\n',
    );
  });

  it('prints its usage for --help and refuses unknown arguments', async () => {
    const help = await run(shell, ['--help'], { env: sessionEnv() });
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: periscope-shell /);
    const bad = await run(shell, ['bash', '-c', 'id'], { env: sessionEnv() });
    expect(bad.code).toBe(64);
    expect(bad.stderr).toMatch(/^usage: /);
  });

  describe('hold', () => {
    it.each(['SIGTERM', 'SIGINT'] as const)(
      'prepares the audit directory and waits until %s, then exits 0',
      async (signal) => {
        const env = sessionEnv();
        const p = run(shell, ['hold'], { env });
        await until('the ready line', () => p.output().includes('ready'));
        expect(p.output()).toBe(`periscope-shell: session ${ID} ready (mode bash); waiting for SIGTERM\n`);
        expect(statSync(join(env.PERISCOPE_SHELL_AUDIT_FILE, '..')).isDirectory()).toBe(true);
        await new Promise((r) => setTimeout(r, 300));
        p.kill(signal);
        const r = await p;
        expect(r).toMatchObject({ code: 0, signal: null, stderr: '' });
      },
    );
  });

  describe('session', () => {
    it('runs bash --login with the session kubeconfig and exits with bash exit code', async () => {
      const env = sessionEnv();
      const r = await run(shell, [], {
        env,
        input:
          'echo "kubeconfig=$KUBECONFIG"; echo "session=$PERISCOPE_SHELL_SESSION_ID"; shopt -q login_shell && echo login; exit 5\n',
      });
      expect(r.code).toBe(5);
      expect(r.stdout).toContain('kubeconfig=/etc/periscope/kubeconfig\n');
      expect(r.stdout).toContain(`session=${ID}\n`);
      expect(r.stdout).toContain('login\n');
      expect(existsSync(join(env.PERISCOPE_SHELL_AUDIT_FILE, '..'))).toBe(true);
      if (!existsSync('/etc/periscope/kubeconfig'))
        expect(r.stderr).toContain(
          'periscope-shell: warning: /etc/periscope/kubeconfig is missing: kubectl and helm have no credentials in this session',
        );
    });

    it('passes SIGTERM to bash and ends the way bash ended', async () => {
      const p = run(shell, [], { env: sessionEnv(), input: 'echo started; sleep 2; echo not-reached\n' });
      await until('bash to start', () => p.output().includes('started'));
      p.kill('SIGTERM');
      const r = await p;
      expect(r.stdout).not.toContain('not-reached');
      expect(r.signal).toBe('SIGTERM');
    });

    it('gives bash the terminal: Ctrl-C stops the foreground command, not the session', async () => {
      const r = await underPty(
        [shell],
        [
          { send: 'echo "k=$KUBECONFIG"\n' },
          { expect: 'k=/etc/periscope/kubeconfig' },
          { send: 'sleep 10; echo slept\n' },
          { sleep: 0.3 },
          { send: '\x03' },
          { send: 'echo alive-$((40+2))\n' },
          { expect: 'alive-42' },
          { send: 'exit 7\n' },
        ],
        sessionEnv(),
      );
      expect(r.timedOut).toBe(false);
      // The terminal echoes the typed line; the command's own output would start a line.
      expect(r.out).not.toMatch(/(^|\n)slept\r/);
      expect(r).toMatchObject({ code: 7, signal: null });
    });
  });
});
