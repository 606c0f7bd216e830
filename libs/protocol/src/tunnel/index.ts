export * from './frames';
export * from './credit';
export * from './mux';
