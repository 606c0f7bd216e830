import { ERROR_CODE } from '@periscope/protocol';

import type { Principal } from '../auth/session-store';
import { DomainError } from '../common/domain-error';

/** Only the admin tier may exec into, or list the pods of, Periscope's own namespaces. */
export function mayEnterProtected(principal: Principal): boolean {
  return principal.tier === 'admin';
}

/** The refusal of a protected namespace, with what to do instead. */
export function protectedNamespaceError(
  principal: Principal,
  cluster: string,
  namespace: string,
  what: 'exec into its pods' | 'list its pods',
): DomainError {
  return new DomainError(
    ERROR_CODE.protectedNamespace,
    `namespace ${namespace} on cluster ${cluster} belongs to Periscope (its agent, server or shell sessions); ` +
      `only the admin tier may ${what} (you have ${principal.tier ?? 'no tier'}). ` +
      'Use a namespace of your own workloads, or ask a Periscope admin.',
    { namespace },
  );
}
