import { ERROR_CODE } from '@periscope/protocol';
import { Transform } from 'class-transformer';
import { ValidateBy, ValidateIf, type ValidationArguments } from 'class-validator';

import type { Principal } from '../auth/session-store';
import { isAuditor } from '../auth/tiers';
import { DomainError } from '../common/domain-error';
import type { AuditOutcome, AuditQuery } from './audit-store';

export const AUDIT_LIMIT_DEFAULT = 100;
export const AUDIT_LIMIT_MAX = 500;
const MAX_FILTER = 256;

/** A calendar date, or a date-time with seconds optional, fraction optional and a zone (Z or ±hh:mm). */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/;

const got = (a: ValidationArguments): string => JSON.stringify(String(a.value).slice(0, 100));
const msIn = (v: string): number => (ISO_TIME.test(v) ? Date.parse(v) : NaN);

/**
 * Every query rule starts here: an empty value (a form with blank fields) means "no filter", and
 * a parameter given twice arrives as a list, which no filter accepts.
 */
function QueryValue(rule: (v: string) => boolean, allowed: string): PropertyDecorator {
  return (target, key) => {
    Transform(({ value }: { value: unknown }) => (value === '' ? undefined : value))(target, key);
    ValidateIf((_o: object, v: unknown) => v !== undefined)(target, key);
    ValidateBy({
      name: 'queryValue',
      validator: {
        validate: (v: unknown) => typeof v === 'string' && rule(v),
        defaultMessage: (a?: ValidationArguments) =>
          a === undefined || typeof a.value === 'string'
            ? `$property must be ${allowed}; got ${a ? got(a) : 'nothing'}`
            : '$property may be given once, as a plain value',
      },
    })(target, key);
  };
}

const text = (v: string): boolean => v.length <= MAX_FILTER;
const integer =
  (min: number, max: number) =>
  (v: string): boolean => {
    const n = /^\d{1,16}$/.test(v) ? Number(v) : NaN;
    return Number.isSafeInteger(n) && n >= min && n <= max;
  };
const isoTime = (v: string): boolean => !Number.isNaN(msIn(v));
const ISO_HINT = 'an ISO 8601 time such as 2025-01-31 or 2025-01-31T12:00:00Z';

/** The query string of `GET /api/audit`. */
export class AuditQueryDto {
  @QueryValue(text, `at most ${MAX_FILTER} characters`)
  verb?: string;

  @QueryValue(text, `at most ${MAX_FILTER} characters`)
  actor?: string;

  @QueryValue(text, `at most ${MAX_FILTER} characters`)
  cluster?: string;

  @QueryValue(text, `at most ${MAX_FILTER} characters`)
  session_id?: string;

  @QueryValue((v) => v === 'ok' || v === 'error', 'ok or error')
  outcome?: AuditOutcome;

  @QueryValue(isoTime, ISO_HINT)
  since?: string;

  @QueryValue(isoTime, ISO_HINT)
  until?: string;

  @QueryValue(integer(1, AUDIT_LIMIT_MAX), `an integer from 1 to ${AUDIT_LIMIT_MAX}`)
  limit?: string;

  @QueryValue(integer(1, Number.MAX_SAFE_INTEGER), `an integer from 1 to ${Number.MAX_SAFE_INTEGER}`)
  before?: string;
}

/**
 * The store query for a checked `GET /api/audit` query, with the scope rule: a caller who is not
 * an auditor only ever sees events whose actor is themself, whatever `actor` they ask for.
 */
export function auditQuery(
  dto: AuditQueryDto,
  principal: Principal,
  auditAdminGroups: readonly string[],
): AuditQuery {
  const q: AuditQuery = { limit: dto.limit !== undefined ? Number(dto.limit) : AUDIT_LIMIT_DEFAULT };
  if (dto.verb !== undefined) q.verb = dto.verb;
  if (dto.actor !== undefined) q.actor = dto.actor;
  if (dto.cluster !== undefined) q.cluster = dto.cluster;
  if (dto.session_id !== undefined) q.sessionId = dto.session_id;
  if (dto.outcome !== undefined) q.outcome = dto.outcome;
  if (dto.since !== undefined) q.since = new Date(msIn(dto.since)).toISOString();
  if (dto.until !== undefined) q.until = new Date(msIn(dto.until)).toISOString();
  if (q.since !== undefined && q.until !== undefined && q.since > q.until)
    throw new DomainError(ERROR_CODE.badRequest, `since (${q.since}) is after until (${q.until})`);
  if (dto.before !== undefined) q.before = Number(dto.before);
  if (!isAuditor(principal, auditAdminGroups)) q.actor = principal.subject;
  return q;
}
