export * from './frames';
export * from './credit';
