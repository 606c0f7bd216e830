import { AUDIT_EXTRA, type Impersonation } from '@periscope/cluster-ops';

import { ERROR_CODE } from '@periscope/protocol';

import { isSystemName } from '../common/system-names';
import type { Principal } from '../auth/session-store';
import { DomainError } from '../common/domain-error';
import type { AuthSettings } from '../config/auth-file';

/** The group every tier-mode call carries; the charts bind it to the tier's ClusterRole. */
export const TIER_GROUP_PREFIX = 'periscope-tier:';

/**
 * Who a call made for a human runs as, per authorization mode: `shared` — the server's (or
 * agent's) own identity; `tier` — the subject with exactly one group, their tier (none: RBAC
 * denies); `raw` — the subject with every IdP group behind the configured prefix (so nobody
 * can become system:masters). The session id and actor travel as extras into the apiserver audit.
 * A `system:` subject is refused (403) and `system:` groups are never impersonated, whatever the
 * mode: sign-in already refuses and drops them, this is the last check before the apiserver.
 */
export function impersonationFor(
  p: Principal,
  authz: AuthSettings['authorization'],
  sessionId?: string,
): Impersonation | undefined {
  if (isSystemName(p.subject))
    throw new DomainError(
      ERROR_CODE.forbidden,
      `the subject "${p.subject}" starts with "system:", which Kubernetes reserves for its own users; Periscope does not act as it`,
    );
  const extra: Record<string, string[]> =
    sessionId !== undefined
      ? { [AUDIT_EXTRA.sessionId]: [sessionId], [AUDIT_EXTRA.actor]: [p.subject] }
      : { [AUDIT_EXTRA.actor]: [p.subject] };
  switch (authz.mode) {
    case 'shared':
      return undefined;
    case 'tier':
      return { user: p.subject, groups: p.tier !== undefined ? [TIER_GROUP_PREFIX + p.tier] : [], extra };
    case 'raw':
      return {
        user: p.subject,
        groups: p.groups
          .filter((g) => g !== '' && !isSystemName(g))
          .map((g) => authz.groupPrefix + g)
          .filter((g) => !isSystemName(g)),
        extra,
      };
  }
}
