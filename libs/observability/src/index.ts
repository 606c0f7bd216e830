export * from './observability.module';
export * from './readiness';
export * from './metrics';
export * from './ops-listener';
export * from './heap';
export * from './tier-binder-metrics';
export * from './process-guards';
