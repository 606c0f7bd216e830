import { TERMINAL_ERROR } from '@periscope/protocol';

import { TIER_NAMES, type TierName } from '../config/server-env';
import type { SessionError, SessionInfo } from './terminal-session';

const rank = (t: string | null | undefined): number =>
  t === null || t === undefined ? -1 : TIER_NAMES.indexOf(t as TierName);

/**
 * Whether a running terminal may go on for an operator whose tier is now `tier` (after a token
 * refresh re-read their groups, or when they resume it). Answers undefined to keep it, or the
 * error it ends with:
 *
 * - a cluster shell runs with its tier's identity (the tier's ServiceAccount and group): it goes on
 *   only with the same tier;
 * - a pod exec impersonates the tier it was opened with: it goes on with the same or a higher
 *   tier (it can do no more than it could), and ends when the tier was lowered or lost.
 */
export function readmit(
  info: Pick<SessionInfo, 'kind' | 'tier'>,
  tier: TierName | undefined,
): SessionError | undefined {
  const was = info.tier;
  if ((tier ?? null) === was) return undefined;
  if (info.kind === 'pod_exec' && rank(tier) > rank(was)) return undefined;
  const what =
    info.kind === 'cluster_shell' ? 'this cluster shell runs as tier' : 'this exec was opened with tier';
  return {
    code: TERMINAL_ERROR.tierChanged,
    message: `your tier changed from ${was ?? 'none'} to ${tier ?? 'none'} (your groups at the identity provider changed); ${what} ${was ?? 'none'}, so it ended. Open a new session`,
    retryable: false,
  };
}
