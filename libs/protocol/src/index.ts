export * from './terminal-frames';
export * from './error-codes';
