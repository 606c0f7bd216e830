import type { TierName } from '../config/server-env';
import { TIER_NAMES } from '../config/server-env';
import type { Principal } from './session-store';
import { isSystemName } from '../common/system-names';

/**
 * The tier of a user: the highest tier any of their groups maps to, else the default tier.
 * A `system:` group never counts (the auth file cannot map one, and sign-in drops them).
 */
export function resolveTier(
  groups: readonly string[],
  groupTiers: Readonly<Record<string, TierName>>,
  defaultTier?: TierName,
): TierName | undefined {
  let best: TierName | undefined;
  for (const g of groups) {
    if (isSystemName(g)) continue;
    const t = groupTiers[g];
    if (t !== undefined && (best === undefined || TIER_NAMES.indexOf(t) > TIER_NAMES.indexOf(best))) best = t;
  }
  return best ?? defaultTier;
}

export function tierAtLeast(tier: TierName | undefined, minimum: TierName): boolean {
  return tier !== undefined && TIER_NAMES.indexOf(tier) >= TIER_NAMES.indexOf(minimum);
}

/** Auditors see every event: the admin tier, or any group listed in `auditAdminGroups`. */
export function isAuditor(p: Principal, auditAdminGroups: readonly string[]): boolean {
  return p.tier === 'admin' || p.groups.some((g) => auditAdminGroups.includes(g));
}
