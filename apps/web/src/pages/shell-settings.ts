import type { ClusterShellSettings } from '../types';

/** 90 → "90 s", 1200 → "20 min", 5400 → "1 h 30 min". */
export function duration(seconds: number): string {
  if (seconds < 60 || seconds % 60 !== 0) return `${seconds} s`;
  const m = seconds / 60;
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return m % 60 === 0 ? `${h} h` : `${h} h ${m % 60} min`;
}

/**
 * One line of a cluster's effective shell settings, as the cluster page shows them: each tier's
 * mode (tiers sharing a mode together), the idle cut, the cap and the image.
 */
export function shellSettingsLine(s: ClusterShellSettings): string {
  const byMode = new Map<string, string[]>();
  for (const t of s.tiers) {
    const mode = s.modeByTier[t] ?? '?';
    byMode.set(mode, [...(byMode.get(mode) ?? []), t]);
  }
  const modes = [...byMode].map(([mode, tiers]) => `${mode} for ${tiers.join(', ')}`).join('; ');
  return `${modes} · idle cut after ${duration(s.idleSeconds)} · at most ${s.maxSessionsTotal} at once · image ${s.image}`;
}
