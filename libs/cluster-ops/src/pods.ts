import { request } from 'node:https';
import { request as httpRequest } from 'node:http';

import type { KubeConfig } from '@kubernetes/client-node';
import type { PodListRequest, PodSummary } from '@periscope/protocol';

import { impersonationHeaders } from './exec/exec-session';

const MAX_BODY = 32 * 1024 * 1024;

interface PodItem {
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> };
  spec?: { containers?: { name?: string }[] };
  status?: { phase?: string };
}

/**
 * Lists pods with the given identity (impersonated when asked), so a person sees only what their
 * RBAC lets them list. Errors carry the apiserver's HTTP status as `status`.
 */
export async function listPods(kc: KubeConfig, req: PodListRequest): Promise<PodSummary[]> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const path =
    (req.namespace !== undefined
      ? `/api/v1/namespaces/${encodeURIComponent(req.namespace)}/pods`
      : '/api/v1/pods') + `?limit=${req.limit}`;
  const url = new URL(cluster.server.replace(/\/$/, '') + path);
  const opts: Record<string, unknown> & { headers: Record<string, string | string[]> } = {
    headers: { accept: 'application/json' },
  };
  await kc.applyToHTTPSOptions(opts);
  if (req.impersonate) Object.assign(opts.headers, impersonationHeaders(req.impersonate));
  const body = await new Promise<string>((resolve, reject) => {
    const r = (url.protocol === 'https:' ? request : httpRequest)(
      url,
      { ...opts, method: 'GET', timeout: 30_000 },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY) {
            res.destroy(new Error(`pod list larger than ${MAX_BODY} bytes; filter by namespace`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            resolve(text);
            return;
          }
          let message = text;
          try {
            message = (JSON.parse(text) as { message?: string }).message ?? text;
          } catch {
            // plain text
          }
          reject(
            Object.assign(new Error(`listing pods failed (HTTP ${status}): ${message}`), {
              status,
              statusCode: status,
            }),
          );
        });
      },
    );
    r.on('timeout', () => r.destroy(new Error('listing pods timed out after 30 s')));
    r.on('error', reject);
    r.end();
  });
  const items = (JSON.parse(body) as { items?: PodItem[] }).items ?? [];
  return items.map((p) => {
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
