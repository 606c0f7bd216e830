import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';

import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';

import { installProcessGuards } from './process-guards';

function recorder() {
  const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  return {
    lines,
    log: {
      error: (fields: object, message: string) =>
        lines.push({ level: 'error', fields: fields as Record<string, unknown>, message }),
      fatal: (fields: object, message: string) =>
        lines.push({ level: 'fatal', fields: fields as Record<string, unknown>, message }),
    },
  };
}

describe(installProcessGuards.name, () => {
  it('logs an unhandled rejection with its stack, counts it, and does not exit', async () => {
    const events = new EventEmitter();
    const target = events as unknown as NodeJS.Process;
    const { lines, log } = recorder();
    const exits: number[] = [];
    const registry = new Registry();
    const remove = installProcessGuards({ log, registry, target, exit: (c) => exits.push(c) });
    events.emit(
      'unhandledRejection',
      new TypeError("Cannot read properties of undefined (reading 'enabled')"),
    );
    events.emit('unhandledRejection', { not: 'an error' });
    expect(exits).toEqual([]);
    expect(lines[0]).toMatchObject({
      level: 'error',
      fields: { event: 'unhandledRejection', type: 'TypeError', err: expect.stringContaining('reading') },
    });
    expect(String(lines[0]?.fields['stack'])).toContain('process-guards.spec');
    expect(lines[1]?.fields).toMatchObject({ err: '{"not":"an error"}', type: 'object' });
    expect(await registry.getSingleMetricAsString('periscope_unhandled_rejections_total')).toMatch(
      /periscope_unhandled_rejections_total 2/,
    );
    remove();
    expect(events.listenerCount('unhandledRejection')).toBe(0);
  });

  it('logs an uncaught exception as fatal and exits with 1', () => {
    const events = new EventEmitter();
    const { lines, log } = recorder();
    const exits: number[] = [];
    installProcessGuards({ log, target: events as unknown as NodeJS.Process, exit: (c) => exits.push(c) });
    events.emit('uncaughtException', new Error('boom'), 'uncaughtException');
    expect(exits).toEqual([1]);
    expect(lines[0]).toMatchObject({ level: 'fatal', fields: { err: 'boom', origin: 'uncaughtException' } });
  });

  it('keeps a real Node process alive through a rejection nobody handles', () => {
    // Without the guard, Node ends the process at the first unhandled rejection (exit code 1).
    const script = (guard: boolean): string => `
      const { installProcessGuards } = require(${JSON.stringify(require.resolve('./process-guards.ts'))});
      ${guard ? "installProcessGuards({ log: { error: (f, m) => console.log('LOGGED', m), fatal: () => undefined } });" : ''}
      Promise.reject(new Error('nobody handles me'));
      setTimeout(() => { console.log('STILL SERVING'); }, 100);
    `;
    const guarded = spawnSync(process.execPath, ['--import', 'tsx', '-e', script(true)], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(guarded.status).toBe(0);
    expect(guarded.stdout).toContain('LOGGED unhandled promise rejection');
    expect(guarded.stdout).toContain('STILL SERVING');
    const bare = spawnSync(process.execPath, ['--import', 'tsx', '-e', script(false)], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(bare.status).toBe(1);
    expect(bare.stdout).not.toContain('STILL SERVING');
  });
});
