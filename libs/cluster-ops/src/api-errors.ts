/**
 * The HTTP status of a failed Kubernetes API call made with @kubernetes/client-node (its errors
 * carry it as `code` or `statusCode` depending on the path), or undefined for other errors.
 */
export function apiStatus(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown; body?: { code?: unknown } } | null;
  for (const c of [e?.code, e?.statusCode, e?.body?.code]) if (typeof c === 'number') return c;
  return undefined;
}
