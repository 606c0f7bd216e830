import { ERROR_CODE } from '@periscope/protocol';
import { describe, expect, it } from 'vitest';

import type { Principal } from '../auth/session-store';
import { DomainError } from '../common/domain-error';
import { isAuditor, parseAuditQuery } from './audit-query';

const admin: Principal = { subject: 'root', email: '', groups: ['admins'], tier: 'admin' };
const dev: Principal = { subject: 'dev', email: '', groups: ['devs'], tier: 'read' };
const auditor: Principal = { subject: 'aud', email: '', groups: ['devs', 'sec-audit'], tier: 'read' };
const nobody: Principal = { subject: 'x', email: '', groups: [], tier: undefined };

function badMessage(raw: Record<string, unknown>): string {
  try {
    parseAuditQuery(raw, admin, []);
  } catch (err) {
    expect(err).toBeInstanceOf(DomainError);
    expect((err as DomainError).code).toBe(ERROR_CODE.badRequest);
    return (err as DomainError).message;
  }
  throw new Error(`accepted ${JSON.stringify(raw)}`);
}

describe(parseAuditQuery.name, () => {
  it('reads every filter, normalises times and defaults the limit', () => {
    expect(parseAuditQuery({}, admin, [])).toEqual({ limit: 100 });
    expect(
      parseAuditQuery(
        {
          verb: 'cluster_shell_close',
          actor: 'bob',
          cluster: 'east',
          session_id: 's1',
          outcome: 'error',
          since: '2025-01-31',
          until: '2025-02-01T01:30:00+01:00',
          limit: '500',
          before: '42',
        },
        admin,
        [],
      ),
    ).toEqual({
      verb: 'cluster_shell_close',
      actor: 'bob',
      cluster: 'east',
      sessionId: 's1',
      outcome: 'error',
      since: '2025-01-31T00:00:00.000Z',
      until: '2025-02-01T00:30:00.000Z',
      limit: 500,
      before: 42,
    });
    // Empty values (a form with blank fields) mean "no filter".
    expect(parseAuditQuery({ verb: '', actor: '', limit: '', since: '' }, admin, [])).toEqual({ limit: 100 });
  });

  it('rejects bad input with a message that names the parameter', () => {
    expect(badMessage({ limit: '0' })).toMatch(/^limit must be an integer from 1 to 500/);
    expect(badMessage({ limit: '501' })).toMatch(/^limit must be/);
    expect(badMessage({ limit: '1.5' })).toMatch(/^limit must be/);
    expect(badMessage({ limit: 'ten' })).toMatch(/^limit must be/);
    expect(badMessage({ before: '0' })).toMatch(/^before must be an integer/);
    expect(badMessage({ before: '-3' })).toMatch(/^before must be/);
    expect(badMessage({ outcome: 'failed' })).toBe('outcome must be ok or error; got "failed"');
    expect(badMessage({ since: 'yesterday' })).toMatch(/^since must be an ISO 8601 time/);
    expect(badMessage({ since: '2025-13-45' })).toMatch(/^since must be/);
    expect(badMessage({ until: '2025-01-31T12:00:00' })).toMatch(/^until must be/); // no zone: ambiguous
    expect(badMessage({ until: '1738324800' })).toMatch(/^until must be/);
    expect(badMessage({ since: '2025-02-01', until: '2025-01-01' })).toMatch(/^since .* is after until/);
    expect(badMessage({ verb: ['a', 'b'] })).toBe('verb may be given once, as a plain value');
    expect(badMessage({ sessionId: 's1' })).toMatch(
      /^unknown query parameter "sessionId"; allowed: verb, actor/,
    );
  });

  it('limits non-auditors to their own events', () => {
    expect(isAuditor(admin, [])).toBe(true);
    expect(isAuditor(auditor, ['sec-audit'])).toBe(true);
    expect(isAuditor(dev, ['sec-audit'])).toBe(false);
    expect(isAuditor(nobody, [])).toBe(false);
    expect(parseAuditQuery({ actor: 'root' }, dev, ['sec-audit'])).toEqual({ actor: 'dev', limit: 100 });
    expect(parseAuditQuery({}, nobody, [])).toEqual({ actor: 'x', limit: 100 });
    expect(parseAuditQuery({ actor: 'root' }, auditor, ['sec-audit'])).toEqual({ actor: 'root', limit: 100 });
    expect(parseAuditQuery({}, auditor, ['sec-audit'])).toEqual({ limit: 100 });
  });
});
