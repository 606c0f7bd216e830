export * from './frames';
export * from './credit';
export * from './mux';
export * from './rpc';
export * from './backoff';
export * from './ids';
export * from './ring';
export * from './ops';
