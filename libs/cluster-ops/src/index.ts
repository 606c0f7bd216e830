export * from './exec/exec-session';
export * from './shell/shell-objects';
export * from './shell/shell-provisioner';
export * from './cluster-ca';
export * from './gateway';
export * from './eks-token';
export * from './api-errors';
export * from './shell/token-rotations';
