import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(__dirname, '../..');
const lib = join(root, 'scripts/lib/progress.sh');
const dir = mkdtempSync(join(tmpdir(), 'periscope-progress-'));
const log = join(dir, 't.log');

// Each script ends within seconds; the deadline only bounds a hang.
const RUN_TIMEOUT_MS = 30_000;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  lines: string[];
}

/** Runs BODY in bash with `set -euo pipefail` after sourcing scripts/lib/progress.sh. */
function progress(body: string, env: Record<string, string> = {}): Run {
  const script = `set -euo pipefail\nPROGRESS_PREFIX=t PROGRESS_LOG='${log}'\n. '${lib}'\n${body}\n`;
  return run(['-c', script], env);
}

function run(args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync('bash', args, {
    cwd: root,
    encoding: 'utf8',
    timeout: RUN_TIMEOUT_MS,
    env: { ...process.env, PROGRESS_DURATIONS: '', PROGRESS_DRY_RUN: '', ...env },
  });
  if (r.error) throw r.error;
  return {
    status: r.status,
    stdout: r.stdout,
    stderr: r.stderr,
    lines: r.stderr.split('\n').filter(Boolean),
  };
}

const ELAPSED = String.raw`(\d+m\d{2}s|\d+s)`;

/**
 * The progress lines of scripts/setup.sh (issue 22), from the helper file it sources: a start line
 * with the usual duration, an end line with the elapsed time, a cached line, a summary, and on
 * failure the failed step's own log lines with what to do. Fake steps stand in for apt-get and
 * npm; setup.sh itself runs in its dry mode, which installs and builds nothing.
 */
describe('build progress lines (scripts/lib/progress.sh, scripts/setup.sh)', () => {
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints a start line with the usual duration, an end line with the elapsed time, a cached line and a summary', () => {
    const r = progress(
      [
        "progress_step 'sleepy step' '~1 s' 'hint unused' bash -c 'echo noisy tool output; sleep 0.1'",
        "progress_cached 'warm step' 'already there'",
        'progress_summary summary',
      ].join('\n'),
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.lines).toHaveLength(4);
    expect(r.lines[0]).toBe('[t] sleepy step … (usually ~1 s)');
    expect(r.lines[1]).toMatch(new RegExp(`^\\[t\\] sleepy step done in ${ELAPSED}$`));
    expect(r.lines[2]).toBe('[t] warm step: cached (already there)');
    expect(r.lines[3]).toMatch(
      new RegExp(
        `^\\[t\\] summary: 2 steps, 1 run, 1 cached, in ${ELAPSED} \\(log: ${log.replace(/[.]/g, '\\.')}\\)$`,
      ),
    );
    // The tool's own output is in the log, not on the terminal.
    expect(r.stderr + r.stdout).not.toContain('noisy tool output');
    expect(readFileSync(log, 'utf8')).toContain('noisy tool output');
  });

  it('formats durations like build.sh', () => {
    const r = progress('for s in 0 59 60 61 754; do printf "%s " "$(progress_dur "$s")"; done');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('0s 59s 1m00s 1m01s 12m34s ');
  });

  it('a failing step prints its own last log lines and what to do, stops at its first failing command, and fails the script', () => {
    const r = progress(
      [
        "progress_step 'earlier step' '~1 s' 'hint unused' bash -c 'echo earlier step output'",
        'broken() { echo first line of the tool; echo the tool complained >&2; false; echo ran past the failure; }',
        "progress_step 'broken step' '~2 min' 'Check the network, then rerun scripts/setup.sh.' broken",
        'echo not reached >&2',
      ].join('\n'),
    );
    expect(r.status).toBe(1);
    const failed = r.lines.findIndex((l) => l.startsWith('[t] broken step FAILED'));
    expect(failed, r.stderr).toBeGreaterThan(0);
    expect(r.lines[failed - 1]).toBe('[t] broken step … (usually ~2 min)');
    expect(r.lines[failed]).toMatch(
      new RegExp(
        `^\\[t\\] broken step FAILED after ${ELAPSED}\\. Its output: .*t\\.log \\(exit status 1; last lines below\\)$`,
      ),
    );
    expect(r.lines.slice(failed + 1)).toEqual([
      '[t]   first line of the tool',
      '[t]   the tool complained',
      '[t] Check the network, then rerun scripts/setup.sh.',
    ]);
    // Only the failed step's lines are shown; `set -e` holds inside the step's function.
    expect(r.stderr).not.toContain('earlier step output');
    expect(readFileSync(log, 'utf8')).not.toContain('ran past the failure');
    expect(r.stderr).not.toContain('not reached');
  });

  it('shows the last duration on this machine beside the usual one', () => {
    const env = { PROGRESS_DURATIONS: join(dir, 'durations') };
    expect(progress("progress_step quick '~1 s' 'hint' true", env).status).toBe(0);
    const r = progress("progress_step quick '~1 s' 'hint' true", env);
    expect(r.status, r.stderr).toBe(0);
    expect(r.lines[0]).toMatch(new RegExp(`^\\[t\\] quick … \\(usually ~1 s; last run here ${ELAPSED}\\)$`));
  });

  it('a script with its own step lines counts as run when it printed a start line, else as cached, and fails with the hint', () => {
    const out = join(dir, 'own.out');
    const r = progress(
      [
        `progress_own 'cold build' 'unused' '${out}' bash -c 'echo "[b] step … (usually ~5 min)" >&2; echo /cache/bin'`,
        `progress_own 'warm build' 'unused' '${out}' bash -c 'echo /cache/bin'`,
        'progress_summary summary',
        `progress_own 'bad build' 'The [b] lines above name the failed step.' '${out}' bash -c 'echo "[b] step FAILED" >&2; exit 3'`,
      ].join('\n'),
    );
    expect(r.status).toBe(3);
    expect(r.lines[0]).toBe('[b] step … (usually ~5 min)');
    expect(r.lines[1]).toMatch(new RegExp(`^\\[t\\] cold build done in ${ELAPSED} → /cache/bin$`));
    expect(r.lines[2]).toBe('[t] warm build: cached (/cache/bin)');
    expect(r.lines[3]).toMatch(new RegExp(`^\\[t\\] summary: 2 steps, 1 run, 1 cached, in ${ELAPSED}$`));
    expect(r.lines[4]).toBe('[b] step FAILED');
    expect(r.lines[5]).toMatch(
      new RegExp(
        `^\\[t\\] bad build FAILED after ${ELAPSED}\\. The \\[b\\] lines above name the failed step\\.$`,
      ),
    );
  });

  it('a dry run prints the start lines and runs nothing', () => {
    const marker = join(dir, 'marker');
    const r = progress(
      [
        `progress_step 'would install' '~2 min' 'hint' touch '${marker}'`,
        `progress_own 'own build' 'hint' '${join(dir, 'own.out')}' touch '${marker}'`,
        'progress_summary summary',
      ].join('\n'),
      { PROGRESS_DRY_RUN: '1' },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(marker)).toBe(false);
    expect(r.lines).toEqual([
      `[t] would install … (usually ~2 min) — dry run, not run: touch ${marker}`,
      `[t] own build: not checked — dry run, not run: touch ${marker} (prints its own steps)`,
      expect.stringMatching(
        new RegExp(
          `^\\[t\\] summary: 2 steps, 1 to run \\(dry run\\), 0 cached, 1 not checked, in ${ELAPSED}$`,
        ),
      ),
    ]);
  });

  it('scripts/setup.sh --images in its dry mode prints one line per step and a summary that counts them', () => {
    const r = run(['scripts/setup.sh', '--images'], { PERISCOPE_SETUP_DRY_RUN: '1' });
    expect(r.status, r.stderr).toBe(0);
    for (const line of r.lines) expect(line).toMatch(/^\[setup\] /);
    const steps = r.lines.slice(0, -1);
    for (const line of steps)
      expect(line).toMatch(/: cached \(|… \(usually .*\) — dry run, not run: |: not checked — dry run/);
    for (const name of [
      'Debian packages',
      'npm dependencies',
      'control plane binaries',
      'image build inputs',
      'moto',
    ])
      expect(
        steps.some((l) => l.startsWith(`[setup] ${name}`)),
        `${name} in\n${r.stderr}`,
      ).toBe(true);
    const toRun = steps.filter(
      (l) => l.includes('— dry run, not run: ') && !l.includes('not checked'),
    ).length;
    const cached = steps.filter((l) => l.includes(': cached (')).length;
    const unchecked = steps.filter((l) => l.includes(': not checked')).length;
    expect(r.lines.at(-1)).toMatch(
      new RegExp(
        `^\\[setup\\] summary: ${steps.length} steps, ${toRun} to run \\(dry run\\), ${cached} cached, ${unchecked} not checked, in ${ELAPSED}$`,
      ),
    );
  });
});
