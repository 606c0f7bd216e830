export * from './env-spec';
export * from './config-error';
export * from './mask';
export * from './docs-sync';
