/** Reading an audit event's free-form body: typed fields when present, the recorded commands, refusals. */
import type { AuditEvent } from '../types';

export interface Command {
  argv: string[];
  exit_code: number | null;
  duration_ms: number | null;
  timestamp?: string;
}

export const num = (v: unknown): number | null => (typeof v === 'number' ? v : null);
export const text = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/** The kubectl/helm commands a closing event recorded; malformed entries are skipped or blanked. */
export function commandsOf(e: AuditEvent): Command[] {
  const list = e.body['commands'];
  if (!Array.isArray(list)) return [];
  return list
    .filter((c): c is Record<string, unknown> => typeof c === 'object' && c !== null)
    .map((c) => ({
      argv: Array.isArray(c['argv']) ? c['argv'].map(String) : [],
      exit_code: num(c['exit_code']),
      duration_ms: num(c['duration_ms']),
      timestamp: text(c['timestamp']) ?? undefined,
    }));
}

/** A refused open (`cluster_shell_denied`, `exec_denied`): its code, message, and refusals left unrecorded before it. */
export interface Refusal {
  code: string;
  reason: string | null;
  droppedBefore: number;
}

export function refusalOf(e: AuditEvent): Refusal | null {
  if (!e.verb.endsWith('_denied')) return null;
  return {
    code: text(e.body['code']) ?? 'unknown',
    reason: text(e.body['reason']),
    droppedBefore: num(e.body['dropped_before']) ?? 0,
  };
}

/** The reason column: a close's close_reason, a refusal's code. */
export const reasonOf = (e: AuditEvent): string | null =>
  text(e.body['close_reason']) ?? refusalOf(e)?.code ?? null;

/**
 * A session ended on request: who asked (`ended_by` on a close, `by` on `session_end_request`)
 * and the reason they gave (`end_reason`), when the event says so.
 */
export function endedByOf(e: AuditEvent): { by: string; reason: string | null } | null {
  const by = text(e.body['ended_by']) ?? (e.verb === 'session_end_request' ? text(e.body['by']) : null);
  if (by === null) return null;
  return { by, reason: text(e.body['end_reason']) };
}
