import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * Prometheus metrics of a tier binder (libs/cluster-ops TierBinder), as its observer hooks:
 * bindings created and deleted, failed calls by operation, and the last full sync.
 */
export function tierBinderMetrics(registry: Registry): {
  changed(action: 'created' | 'deleted'): void;
  failed(op: string): void;
  synced(summary: { namespaces: number; bindings: number; durationMs: number }): void;
} {
  const changes = new Counter({
    name: 'periscope_tier_binder_changes_total',
    help: 'Tier RoleBindings the tier binder created or deleted',
    labelNames: ['action'],
    registers: [registry],
  });
  const errors = new Counter({
    name: 'periscope_tier_binder_errors_total',
    help: 'Failed apiserver calls of the tier binder, by operation',
    labelNames: ['op'],
    registers: [registry],
  });
  const lastSync = new Gauge({
    name: 'periscope_tier_binder_last_sync_timestamp_seconds',
    help: 'When the tier binder last finished a full sync (alert when it is old)',
    registers: [registry],
  });
  const namespaces = new Gauge({
    name: 'periscope_tier_binder_namespaces',
    help: 'Namespaces seen by the last full sync of the tier binder',
    registers: [registry],
  });
  const bindings = new Gauge({
    name: 'periscope_tier_binder_bindings',
    help: 'Tier RoleBindings in place after the last full sync',
    registers: [registry],
  });
  return {
    changed: (action) => {
      changes.inc({ action });
    },
    failed: (op) => {
      errors.inc({ op });
    },
    synced: (s) => {
      lastSync.set(Date.now() / 1000);
      namespaces.set(s.namespaces);
      bindings.set(s.bindings);
    },
  };
}
