export * from './terminal-frames';
export * from './error-codes';
export * from './tunnel/index';
