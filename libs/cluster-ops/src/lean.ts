/**
 * The library without the modules that load `@kubernetes/client-node` or the AWS SDK when they
 * are loaded (the EKS gateway): what the agent imports (`@periscope/cluster-ops/dist/lean`), so an
 * agent that never provisions a shell never loads client-node (≈ 26 MiB of heap). The paths that
 * still use client-node's generated API (shell provisioning, the access check, the cluster-CA
 * lookup) load it on first use (kube-config.ts, `clientNode`).
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
