import type { KubeAccess } from './kube-config';
import type { PodListRequest, PodSummary } from '@periscope/protocol';

import { kubeJson } from './kube-http';

const MAX_BODY = 32 * 1024 * 1024;

interface PodItem {
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> };
  spec?: { containers?: { name?: string }[] };
  status?: { phase?: string };
}

/**
 * The query of a pod list: the limit, and a field selector that picks the one pod asked for by
 * name (in its namespace) and leaves out excluded namespaces.
 */
export function podListQuery(
  req: Pick<PodListRequest, 'limit' | 'excludeNamespaces' | 'name' | 'namespace'>,
): string {
  const q = new URLSearchParams({ limit: String(req.limit) });
  const fields = (req.excludeNamespaces ?? []).map((ns) => `metadata.namespace!=${ns}`);
  if (req.name !== undefined && req.namespace !== undefined) fields.unshift(`metadata.name=${req.name}`);
  if (fields.length > 0) q.set('fieldSelector', fields.join(','));
  return q.toString();
}

/**
 * Lists pods with the given identity (impersonated when asked), so a person sees only what their
 * RBAC lets them list; with `name`, only that pod of `namespace` (or none); pods of
 * `excludeNamespaces` are left out by the apiserver. Errors carry the apiserver's HTTP status as
 * `status`; `signal` ends the call early; `requestId` is sent as `Audit-ID`.
 */
export async function listPods(
  kc: KubeAccess,
  req: PodListRequest,
  signal?: AbortSignal,
  requestId?: string,
): Promise<PodSummary[]> {
  const path =
    req.namespace !== undefined
      ? `/api/v1/namespaces/${encodeURIComponent(req.namespace)}/pods`
      : '/api/v1/pods';
  const list = await kubeJson<{ items?: PodItem[] }>(kc, {
    method: 'GET',
    path: `${path}?${podListQuery(req)}`,
    timeoutMs: 30_000,
    maxBytes: MAX_BODY,
    what: 'listing pods',
    ...(req.impersonate ? { impersonate: req.impersonate } : {}),
    ...(signal ? { signal } : {}),
    ...(requestId !== undefined ? { requestId } : {}),
  });
  const hidden = new Set(req.excludeNamespaces ?? []);
  const only = req.namespace !== undefined ? req.name : undefined;
  return (list.items ?? [])
    .filter((p) => !hidden.has(p.metadata?.namespace ?? ''))
    .filter((p) => only === undefined || p.metadata?.name === only)
    .map((p) => {
      const def = p.metadata?.annotations?.['kubectl.kubernetes.io/default-container'];
      return {
        namespace: p.metadata?.namespace ?? '',
        name: p.metadata?.name ?? '',
        phase: p.status?.phase ?? 'Unknown',
        containers: (p.spec?.containers ?? []).map((c) => c.name ?? '').filter((n) => n !== ''),
        ...(def !== undefined ? { defaultContainer: def } : {}),
      };
    });
}
