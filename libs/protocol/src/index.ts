export * from './terminal-frames';
export * from './error-codes';
export * from './end-reason';
export * from './tunnel/index';
export * from './validation/validate';
export * from './validation/rules';
