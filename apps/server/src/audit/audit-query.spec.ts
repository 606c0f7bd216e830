import { ERROR_CODE } from '@periscope/protocol';
import { describe, expect, it } from 'vitest';

import type { Principal } from '../auth/session-store';
import { DomainError } from '../common/domain-error';
import { InputValidationPipe } from '../common/input-validation.pipe';
import { auditQuery, AuditQueryDto } from './audit-query';

const admin: Principal = { subject: 'root', email: '', groups: ['admins'], tier: 'admin' };
const dev: Principal = { subject: 'dev', email: '', groups: ['devs'], tier: 'read' };
const auditor: Principal = { subject: 'aud', email: '', groups: ['devs', 'sec-audit'], tier: 'read' };
const nobody: Principal = { subject: 'x', email: '', groups: [], tier: undefined };

/** The query as the controller sees it: through the global pipe, then into a store query. */
async function parseAuditQuery(
  raw: Record<string, unknown>,
  principal: Principal,
  auditAdminGroups: readonly string[],
): Promise<unknown> {
  const dto = await new InputValidationPipe().transform(raw, { type: 'query', metatype: AuditQueryDto });
  expect(dto).toBeInstanceOf(AuditQueryDto);
  return auditQuery(dto as AuditQueryDto, principal, auditAdminGroups);
}

async function badMessage(raw: Record<string, unknown>): Promise<string> {
  try {
    await parseAuditQuery(raw, admin, []);
  } catch (err) {
    expect(err).toBeInstanceOf(DomainError);
    expect((err as DomainError).code).toBe(ERROR_CODE.badRequest);
    return (err as DomainError).message;
  }
  throw new Error(`accepted ${JSON.stringify(raw)}`);
}

describe(auditQuery.name, () => {
  it('reads every filter, normalises times and defaults the limit', async () => {
    expect(await parseAuditQuery({}, admin, [])).toEqual({ limit: 100 });
    expect(
      await parseAuditQuery(
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
    expect(await parseAuditQuery({ verb: '', actor: '', limit: '', since: '' }, admin, [])).toEqual({
      limit: 100,
    });
  });

  it('rejects bad input with a message that names the parameter', async () => {
    expect(await badMessage({ limit: '0' })).toMatch(/^limit must be an integer from 1 to 500/);
    expect(await badMessage({ limit: '501' })).toMatch(/^limit must be/);
    expect(await badMessage({ limit: '1.5' })).toMatch(/^limit must be/);
    expect(await badMessage({ limit: 'ten' })).toMatch(/^limit must be/);
    expect(await badMessage({ before: '0' })).toMatch(/^before must be an integer/);
    expect(await badMessage({ before: '-3' })).toMatch(/^before must be/);
    expect(await badMessage({ outcome: 'failed' })).toBe('outcome must be ok or error; got "failed"');
    expect(await badMessage({ since: 'yesterday' })).toMatch(/^since must be an ISO 8601 time/);
    expect(await badMessage({ since: '2025-13-45' })).toMatch(/^since must be/);
    expect(await badMessage({ until: '2025-01-31T12:00:00' })).toMatch(/^until must be/); // no zone: ambiguous
    expect(await badMessage({ until: '1738324800' })).toMatch(/^until must be/);
    expect(await badMessage({ since: '2025-02-01', until: '2025-01-01' })).toMatch(
      /^since .* is after until/,
    );
    expect(await badMessage({ verb: ['a', 'b'] })).toBe('verb may be given once, as a plain value');
    expect(await badMessage({ sessionId: 's1' })).toMatch(
      /^unknown query parameter "sessionId"; allowed: verb, actor/,
    );
  });

  it('limits non-auditors to their own events', async () => {
    expect(await parseAuditQuery({ actor: 'root' }, dev, ['sec-audit'])).toEqual({
      actor: 'dev',
      limit: 100,
    });
    expect(await parseAuditQuery({}, nobody, [])).toEqual({ actor: 'x', limit: 100 });
    expect(await parseAuditQuery({ actor: 'root' }, auditor, ['sec-audit'])).toEqual({
      actor: 'root',
      limit: 100,
    });
    expect(await parseAuditQuery({}, auditor, ['sec-audit'])).toEqual({ limit: 100 });
  });
});

describe('GET /api/audit query bounds', () => {
  it('refuses an over-long filter and names every bad parameter at once', async () => {
    expect(await badMessage({ actor: 'a'.repeat(257) })).toMatch(/^actor must be at most 256 characters/);
    const both = await badMessage({ limit: 'x', outcome: 'maybe' });
    expect(both).toContain('outcome must be ok or error');
    expect(both).toContain('limit must be an integer');
  });
});
