/**
 * The library without the EKS modules, which the agent never uses: what the agent imports
 * (`@periscope/cluster-ops/dist/lean`). Neither entry loads `@kubernetes/client-node` or the AWS
 * SDK at start any more (the EKS gateway loads the SDK on its first call); the paths that still
 * use client-node's generated API (shell provisioning, token rotation, the cluster-info CA lookup)
 * load it on first use (kube-config.ts, `clientNode`), ≈ 26 MiB of heap.
 */
export * from './exec/exec-session';
export * from './shell/shell-objects';
export * from './shell/shell-provisioner';
export * from './shell/shell-access';
export * from './cluster-ca';
export * from './gateway';
export * from './direct-gateway';
export * from './abort';
export * from './audit-id';
export * from './api-errors';
export * from './shell/token-rotations';
export * from './kube-http';
export * from './kube-config';
export * from './tier-binder';
