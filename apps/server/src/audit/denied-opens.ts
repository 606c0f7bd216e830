import { Injectable } from '@nestjs/common';
import { ERROR_CODE } from '@periscope/protocol';
import { Metrics } from '@periscope/observability';
import { PinoLogger } from 'nestjs-pino';
import { Counter } from 'prom-client';

import { DomainError } from '../common/domain-error';
import { AuditLog } from './audit-log';

/** The audit verbs of refused opens, named like the opens they refuse (`cluster_shell_open`, `exec_open`). */
export const DENIED_VERB = {
  clusterShell: 'cluster_shell_denied',
  podExec: 'exec_denied',
} as const;
export type DeniedVerb = (typeof DENIED_VERB)[keyof typeof DENIED_VERB];

/**
 * Per-subject bound on denied records: a burst of {@link DENIED_BURST}, then one every
 * {@link DENIED_REFILL_MS}. Past it a refusal is still answered, only not stored; the next stored
 * one says how many were left out (`dropped_before`), and the metric counts them.
 */
export const DENIED_BURST = 20;
export const DENIED_REFILL_MS = 10_000;
/** Longest stored text field (a cluster or pod name from the URL, the refusal message). */
const MAX_FIELD_CHARS = 256;
/** Above this many tracked subjects, those whose bucket is full again are forgotten. */
const SWEEP_ABOVE = 1_000;

/**
 * Codes that are not refusals of an allowed-shaped request: E_AUTH (no sign-in, or a used
 * ticket: there is no subject to attribute), E_BAD_REQUEST (malformed input), E_INTERNAL.
 */
const NOT_AUDITED: readonly string[] = [ERROR_CODE.auth, ERROR_CODE.badRequest, ERROR_CODE.internal];

export interface DeniedOpen {
  verb: DeniedVerb;
  /** The signed-in subject; a refusal without one is not recorded. */
  subject: string | undefined;
  tier: string | null | undefined;
  cluster: string;
  /** Kind-specific target fields (pod exec: namespace, pod, container). Never a command or token. */
  target?: Record<string, string | undefined>;
}

interface Bucket {
  tokens: number;
  at: number;
  dropped: number;
}

const clip = (s: string): string => (s.length > MAX_FIELD_CHARS ? `${s.slice(0, MAX_FIELD_CHARS)}…` : s);

/**
 * Writes `cluster_shell_denied` / `exec_denied` for refused opens: the refusal code and message,
 * cluster, tier, subject and the target; bounded per subject (token bucket) so a person hammering
 * refused opens cannot grow the audit store, nor push their own history out of it.
 */
@Injectable()
export class DeniedOpens {
  private readonly buckets = new Map<string, Bucket>();
  private readonly dropped: Counter<'verb'>;

  constructor(
    private readonly store: AuditLog,
    metrics: Metrics,
    private readonly log: PinoLogger,
  ) {
    this.dropped = new Counter({
      name: 'periscope_audit_denied_dropped_total',
      help: 'Refused opens not written to the audit store because the subject exceeded the denied-record rate bound',
      labelNames: ['verb'],
      registers: [metrics.registry],
    });
  }

  /**
   * Records the refusal `err` of an open, when it is an admission refusal (a DomainError other than
   * E_AUTH / E_BAD_REQUEST / E_INTERNAL) of a signed-in subject. Never throws: the refusal goes
   * out to the caller whatever the store does.
   */
  record(err: unknown, d: DeniedOpen): void {
    if (!(err instanceof DomainError) || NOT_AUDITED.includes(err.code) || d.subject === undefined) return;
    try {
      const droppedBefore = this.take(d.subject);
      if (droppedBefore === undefined) {
        this.dropped.inc({ verb: d.verb });
        return;
      }
      const target = Object.fromEntries(
        Object.entries(d.target ?? {})
          .filter((e): e is [string, string] => e[1] !== undefined)
          .map(([k, v]) => [k, clip(v)]),
      );
      const limit = err.details['limit'];
      // Not awaited: the refusal goes out at once; a failed write is logged (the embedded store
      // has stored the event before this returns).
      void this.store
        .write({
          verb: d.verb,
          actor: d.subject,
          cluster: clip(d.cluster),
          sessionId: '',
          outcome: 'error',
          body: {
            cluster: clip(d.cluster),
            ...target,
            tier: d.tier ?? null,
            actor: d.subject,
            code: err.code,
            reason: clip(err.message),
            ...(typeof limit === 'number' ? { limit } : {}),
            ...(droppedBefore > 0 ? { dropped_before: droppedBefore } : {}),
          },
        })
        .catch((e: unknown) => {
          this.log.error({ err: (e as Error).message, verb: d.verb }, 'could not audit a refused open');
        });
    } catch (e) {
      this.log.error({ err: (e as Error).message, verb: d.verb }, 'could not audit a refused open');
    }
  }

  /** One token of the subject's bucket: the number dropped since the last record, or undefined when empty. */
  private take(subject: string): number | undefined {
    const now = Date.now();
    if (this.buckets.size > SWEEP_ABOVE) this.sweep(now);
    const b = this.buckets.get(subject) ?? { tokens: DENIED_BURST, at: now, dropped: 0 };
    b.tokens = Math.min(DENIED_BURST, b.tokens + (now - b.at) / DENIED_REFILL_MS);
    b.at = now;
    this.buckets.set(subject, b);
    if (b.tokens < 1) {
      if (b.dropped === 0)
        this.log.warn({ subject }, 'refused opens of this subject exceed the audit bound; dropping some');
      b.dropped++;
      return undefined;
    }
    b.tokens -= 1;
    const dropped = b.dropped;
    b.dropped = 0;
    return dropped;
  }

  /** Forgets subjects whose bucket has refilled and who have nothing dropped to report. */
  private sweep(now: number): void {
    for (const [s, b] of this.buckets)
      if (b.dropped === 0 && b.tokens + (now - b.at) / DENIED_REFILL_MS >= DENIED_BURST)
        this.buckets.delete(s);
  }
}
