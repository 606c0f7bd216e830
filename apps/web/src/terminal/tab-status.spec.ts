import { describe, expect, it } from 'vitest';

import { ApiError } from '../api';
import type { Tab } from './store';
import { isLive, pill } from './tab-status';

const base: Tab = {
  id: 't1',
  spec: { kind: 'cluster_shell', cluster: 'local' },
  label: 'shell',
  openedAt: 0,
  stage: 'session',
  state: { phase: 'connecting' },
};
const tab = (over: Partial<Tab>): Tab => ({ ...base, ...over });
const progress = [
  { phase: 'pod', message: 'scheduled', at: 1 },
  { phase: 'image', message: '', at: 2 },
];

describe(pill.name, () => {
  it('speaks of the request until the server answered it', () => {
    expect(pill(tab({ stage: 'requesting' }), 0)).toEqual({ text: 'requesting…', tone: 'warn' });
    const refusal = new ApiError(429, 'E_CAP_USER', 'limit of 2 reached');
    expect(pill(tab({ stage: 'refused', refusal }), 0)).toEqual({
      text: 'E_CAP_USER · limit of 2 reached',
      tone: 'bad',
    });
  });

  it('shows provisioning progress until the first output, then the time connected', () => {
    expect(pill(tab({}), 0)).toEqual({ text: 'connecting…', tone: 'warn' });
    expect(pill(tab({ progress }), 0)).toEqual({ text: 'provisioning · image', tone: 'warn' });
    const open = tab({ state: { phase: 'open', since: 1000 }, progress });
    expect(pill(open, 5000).text).toBe('provisioning · image');
    expect(pill({ ...open, outputSeen: true }, 66_000)).toEqual({ text: 'connected · 01:05', tone: 'ok' });
    expect(pill(tab({ state: { phase: 'open', since: 0 } }), 3_600_000).text).toBe('connected · 1:00:00');
  });

  it('tells reconnecting, ended and failed sessions apart', () => {
    expect(
      pill(tab({ state: { phase: 'reconnecting', attempt: 2, maxAttempts: 10, delayMs: 1 } }), 0),
    ).toEqual({ text: 'reconnecting · 2/10', tone: 'warn' });
    expect(pill(tab({ state: { phase: 'closed', reason: 'exit', exitCode: 0 } }), 0)).toEqual({
      text: 'closed · exit 0',
      tone: 'idle',
    });
    expect(pill(tab({ state: { phase: 'closed', reason: 'exit', exitCode: 2 } }), 0).tone).toBe('bad');
    expect(pill(tab({ state: { phase: 'closed', reason: 'idle' } }), 0)).toEqual({
      text: 'closed · idle',
      tone: 'idle',
    });
    expect(pill(tab({ state: { phase: 'error', code: 'E_PROVISION', message: 'no pod' } }), 0)).toEqual({
      text: 'E_PROVISION · no pod',
      tone: 'bad',
    });
    expect(pill(tab({ state: { phase: 'gone', message: 'x' } }), 0)).toEqual({
      text: 'session ended · open a new one',
      tone: 'idle',
    });
  });
});

describe(isLive.name, () => {
  it('counts sessions that are up or on their way', () => {
    expect(isLive(tab({ state: { phase: 'connecting' } }))).toBe(true);
    expect(isLive(tab({ state: { phase: 'open', since: 0 } }))).toBe(true);
    expect(isLive(tab({ state: { phase: 'reconnecting', attempt: 1, maxAttempts: 3, delayMs: 1 } }))).toBe(
      true,
    );
    expect(isLive(tab({ state: { phase: 'closed', reason: 'exit' } }))).toBe(false);
    expect(isLive(tab({ state: { phase: 'error', code: 'E', message: '' } }))).toBe(false);
    expect(isLive(tab({ state: { phase: 'gone', message: '' } }))).toBe(false);
  });
});
