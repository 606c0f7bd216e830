/**
 * periscope-audit-exec: `/usr/local/bin/kubectl` and `/usr/local/bin/helm` are symlinks to this
 * program. See runAuditExec and docs/shell-image.md.
 */
import { exitLike } from '../common/child';
import { runAuditExec } from './audit-exec';
import { auditExecConfigFrom } from './config';

void runAuditExec({ argv: process.argv, env: process.env, config: auditExecConfigFrom(process.env) }).then(
  exitLike,
);
