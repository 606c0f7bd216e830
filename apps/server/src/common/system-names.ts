/**
 * Kubernetes reserves names that start with `system:` for its own users and groups: nodes,
 * controllers, service accounts, `system:masters` (cluster-admin). Periscope never builds an
 * identity with such a name: not a subject, not a group, not a prefix that an IdP group could
 * complete into one. Compared without regard to case, as the cluster-ops checks do.
 */
export const SYSTEM_PREFIX = 'system:';

export function isSystemName(name: string): boolean {
  return name.toLowerCase().startsWith(SYSTEM_PREFIX);
}

/**
 * Why a raw-mode group prefix is unsafe, or undefined when it is safe. A prefix is unsafe when
 * prefix + some IdP group can start with `system:`: it is empty, starts with `system:`, or is the
 * start of it (`sys` + `tem:masters`).
 */
export function groupPrefixProblem(prefix: string): string | undefined {
  const p = prefix.toLowerCase();
  if (p === '')
    return 'it is empty, so IdP groups are impersonated as they are (an IdP group "system:masters" would be cluster-admin)';
  if (p.startsWith(SYSTEM_PREFIX))
    return `it starts with "${SYSTEM_PREFIX}", which names Kubernetes' own groups`;
  if (SYSTEM_PREFIX.startsWith(p))
    return `an IdP group could complete it to "${SYSTEM_PREFIX}…" ("${prefix}" + "${SYSTEM_PREFIX.slice(p.length)}masters")`;
  return undefined;
}

/** The groups without system ones; the dropped ones are answered too, for a log line. */
export function withoutSystemGroups(groups: readonly string[]): { groups: string[]; dropped: string[] } {
  const kept: string[] = [];
  const dropped: string[] = [];
  for (const g of groups) (isSystemName(g) ? dropped : kept).push(g);
  return { groups: kept, dropped };
}
