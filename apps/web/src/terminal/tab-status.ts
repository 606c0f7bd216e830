/** What a tab's status pill and dot say about its session, in words and a tone. */
import { mmss } from '../format';
import { closedText } from './help';
import type { Tab } from './store';

export type Tone = 'ok' | 'warn' | 'bad' | 'idle';

/** The session is up or on its way (its socket may be reconnecting). */
export function isLive(tab: Tab): boolean {
  const p = tab.state.phase;
  return p === 'open' || p === 'connecting' || p === 'reconnecting';
}

export function pill(tab: Tab, now: number): { text: string; tone: Tone } {
  if (tab.stage === 'requesting') return { text: 'requesting…', tone: 'warn' };
  if (tab.stage === 'refused' && tab.refusal)
    return { text: `${tab.refusal.code} · ${tab.refusal.message}`, tone: 'bad' };
  const s = tab.state;
  switch (s.phase) {
    case 'connecting': {
      const last = tab.progress?.at(-1);
      return { text: last ? `provisioning · ${last.message || last.phase}` : 'connecting…', tone: 'warn' };
    }
    case 'open': {
      const last = tab.progress?.at(-1);
      if (last && tab.outputSeen !== true)
        return { text: `provisioning · ${last.message || last.phase}`, tone: 'warn' };
      return { text: `connected · ${mmss(now - s.since)}`, tone: 'ok' };
    }
    case 'reconnecting':
      return { text: `reconnecting · ${s.attempt}/${s.maxAttempts}`, tone: 'warn' };
    case 'closed':
      return {
        text: closedText(s.reason, s.exitCode),
        tone: s.exitCode !== undefined && s.exitCode !== 0 ? 'bad' : 'idle',
      };
    case 'error':
      return { text: `${s.code} · ${s.message}`, tone: 'bad' };
    case 'gone':
      return { text: 'session ended · open a new one', tone: 'idle' };
  }
}
