import { REQUEST_ID_PATTERN } from '@periscope/protocol';

/**
 * The request header whose value the kube-apiserver takes as the audit event's `auditID` (instead
 * of making one up) and echoes in its answer.
 */
export const AUDIT_ID_HEADER = 'Audit-ID';

/**
 * The `Audit-ID` header for a request id: every apiserver call of one operation (a provision, a
 * teardown, a sweep, a command-log read, an exec) carries the operation's request id, so the
 * cluster's audit log joins the server's and the agent's logs by it. Empty without an id. An id
 * that is not a request id (8 to 64 letters, digits or dashes) is refused, never sent: a header
 * value must not be able to carry a line break or another header.
 */
export function auditIdHeader(requestId: string | undefined): Record<string, string> {
  if (requestId === undefined) return {};
  if (!REQUEST_ID_PATTERN.test(requestId))
    throw new Error(
      `refusing to send ${JSON.stringify(requestId.slice(0, 80))} as the apiserver's Audit-ID: a request id is 8 to 64 letters, digits or dashes (a bug in the caller)`,
    );
  return { [AUDIT_ID_HEADER]: requestId };
}
