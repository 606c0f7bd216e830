function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Reads a claim by name. A name that exists as-is wins (Auth0-style "https://example.com/groups");
 * otherwise a dotted name walks nested objects ("realm_access.roles" in Keycloak tokens).
 */
export function readClaim(claims: Readonly<Record<string, unknown>>, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name];
  let cur: unknown = claims;
  for (const part of name.split('.')) {
    if (!isRecord(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = cur[part];
  }
  return cur;
}

/**
 * The groups in a claim: a list of strings, or a single string (some providers send one group
 * that way). Undefined when the claim is absent, so callers can fall back to the userinfo endpoint.
 * Non-string entries are ignored; duplicates are removed.
 */
export function readGroups(claims: Readonly<Record<string, unknown>>, name: string): string[] | undefined {
  const v = readClaim(claims, name);
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v === '' ? [] : [v];
  if (!Array.isArray(v)) return [];
  return [...new Set(v.filter((g): g is string => typeof g === 'string' && g !== ''))];
}

/** A string claim, or undefined. */
export function readString(claims: Readonly<Record<string, unknown>>, name: string): string | undefined {
  const v = readClaim(claims, name);
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** Whether a user with these groups may sign in: everyone when the list is empty. */
export function isAllowed(groups: readonly string[], allowedGroups: readonly string[]): boolean {
  return allowedGroups.length === 0 || groups.some((g) => allowedGroups.includes(g));
}
