import { ERROR_CODE } from '@periscope/protocol';

import type { Principal } from '../auth/session-store';
import { DomainError } from '../common/domain-error';
import type { AuditOutcome, AuditQuery } from './audit-store';

export const AUDIT_QUERY_PARAMS = [
  'verb',
  'actor',
  'cluster',
  'session_id',
  'outcome',
  'since',
  'until',
  'limit',
  'before',
] as const;

export const AUDIT_LIMIT_DEFAULT = 100;
export const AUDIT_LIMIT_MAX = 500;

/** A calendar date, or a date-time with seconds optional, fraction optional and a zone (Z or ±hh:mm). */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/;

/** Auditors see every event: the admin tier, or any group listed in `auditAdminGroups`. */
export function isAuditor(p: Principal, auditAdminGroups: readonly string[]): boolean {
  return p.tier === 'admin' || p.groups.some((g) => auditAdminGroups.includes(g));
}

function bad(message: string): DomainError {
  return new DomainError(ERROR_CODE.badRequest, message);
}

function isoTime(name: string, v: string): string {
  const ms = ISO_TIME.test(v) ? Date.parse(v) : NaN;
  if (Number.isNaN(ms))
    throw bad(
      `${name} must be an ISO 8601 time such as 2025-01-31 or 2025-01-31T12:00:00Z; got ${JSON.stringify(v)}`,
    );
  return new Date(ms).toISOString();
}

function integer(name: string, v: string, min: number, max: number): number {
  const n = /^\d{1,16}$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw bad(`${name} must be an integer from ${min} to ${max}; got ${JSON.stringify(v)}`);
  return n;
}

/**
 * Validates the query string of `GET /api/audit` (an empty value means "no filter") and applies
 * the scope rule: a caller who is not an auditor only ever sees events whose actor is themself,
 * whatever `actor` they ask for.
 */
export function parseAuditQuery(
  raw: Record<string, unknown>,
  principal: Principal,
  auditAdminGroups: readonly string[],
): AuditQuery {
  const values = new Map<string, string>();
  for (const [key, value] of Object.entries(raw)) {
    if (!(AUDIT_QUERY_PARAMS as readonly string[]).includes(key))
      throw bad(`unknown query parameter ${JSON.stringify(key)}; allowed: ${AUDIT_QUERY_PARAMS.join(', ')}`);
    if (typeof value !== 'string') throw bad(`${key} may be given once, as a plain value`);
    if (value !== '') values.set(key, value);
  }
  const q: AuditQuery = { limit: AUDIT_LIMIT_DEFAULT };
  const verb = values.get('verb');
  const actor = values.get('actor');
  const cluster = values.get('cluster');
  const sessionId = values.get('session_id');
  const outcome = values.get('outcome');
  const since = values.get('since');
  const until = values.get('until');
  const limit = values.get('limit');
  const before = values.get('before');
  if (verb !== undefined) q.verb = verb;
  if (actor !== undefined) q.actor = actor;
  if (cluster !== undefined) q.cluster = cluster;
  if (sessionId !== undefined) q.sessionId = sessionId;
  if (outcome !== undefined) {
    if (outcome !== 'ok' && outcome !== 'error')
      throw bad(`outcome must be ok or error; got ${JSON.stringify(outcome)}`);
    q.outcome = outcome satisfies AuditOutcome;
  }
  if (since !== undefined) q.since = isoTime('since', since);
  if (until !== undefined) q.until = isoTime('until', until);
  if (q.since !== undefined && q.until !== undefined && q.since > q.until)
    throw bad(`since (${q.since}) is after until (${q.until})`);
  if (limit !== undefined) q.limit = integer('limit', limit, 1, AUDIT_LIMIT_MAX);
  if (before !== undefined) q.before = integer('before', before, 1, Number.MAX_SAFE_INTEGER);
  if (!isAuditor(principal, auditAdminGroups)) q.actor = principal.subject;
  return q;
}
