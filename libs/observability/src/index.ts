export * from './observability.module';
export * from './readiness';
export * from './metrics';
export * from './heap';
