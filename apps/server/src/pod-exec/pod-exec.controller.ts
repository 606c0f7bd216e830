import { Body, Controller, Get, Inject, Param, Post, Query, Req, UseGuards } from '@nestjs/common';
import type { PodSummary } from '@periscope/protocol';
import { ERROR_CODE } from '@periscope/protocol';
import type { Request } from 'express';

import { AuthGuard, type AuthedRequest } from '../auth/auth.guard';
import { ClusterRegistry } from '../clusters/cluster-registry.service';
import { impersonationFor } from '../clusters/impersonation';
import { DomainError } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { DEFAULT_COMMAND, OpenExecDto, PodListQueryDto } from './exec-request';
import { execSocketPath, PodExecAdmission } from './pod-exec-admission.service';
import { mayEnterProtected, protectedNamespaceError } from './protected-namespaces';

@Controller('clusters/:cluster/pods')
export class PodExecController {
  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly admission: PodExecAdmission,
    private readonly registry: ClusterRegistry,
  ) {}

  /** Pods the signed-in person may list (listed as them), optionally in one namespace. */
  @Get()
  @UseGuards(AuthGuard)
  async list(
    @Param('cluster') cluster: string,
    @Query() query: PodListQueryDto,
    @Req() req: AuthedRequest,
  ): Promise<{ pods: PodSummary[] }> {
    this.registry.entry(cluster);
    const { namespace } = query;
    // Below admin, Periscope's own namespaces are not shown (and not exec'able, see admission).
    const hidden = mayEnterProtected(req.principal) ? [] : this.registry.protectedNamespaces(cluster);
    if (namespace !== undefined && hidden.includes(namespace))
      throw protectedNamespaceError(req.principal, cluster, namespace, 'list its pods');
    const impersonate = impersonationFor(req.principal, this.config.auth.authorization);
    try {
      const pods = await this.registry.gateway(cluster).listPods({
        ...(namespace !== undefined ? { namespace } : {}),
        limit: 2000,
        ...(impersonate ? { impersonate } : {}),
        ...(hidden.length > 0 ? { excludeNamespaces: hidden } : {}),
      });
      // Agents that predate excludeNamespaces ignore it: filter here as well.
      return { pods: pods.filter((p) => !hidden.includes(p.namespace)) };
    } catch (err) {
      const status = (err as { status?: unknown }).status;
      const message = (err as Error).message;
      if (status === 403)
        throw new DomainError(
          ERROR_CODE.forbidden,
          `you may not list pods ${namespace !== undefined ? `in ${namespace}` : 'in all namespaces'} (tier ${req.principal.tier ?? 'none'}); pick a namespace you can see. Cluster said: ${message}`,
        );
      if (status === 404) throw new DomainError(ERROR_CODE.notFound, message);
      throw new DomainError(ERROR_CODE.upstream, `cannot reach cluster ${cluster}: ${message}`);
    }
  }

  /**
   * Runs the pod-exec admission checks and reserves a cap slot; answers a single-use ticket
   * (30 s) for the exec socket, or the documented error body.
   */
  @Post(':namespace/:pod/exec/sessions')
  async create(
    @Param('cluster') cluster: string,
    @Param('namespace') namespace: string,
    @Param('pod') pod: string,
    @Req() req: Request,
    @Body() body: OpenExecDto,
  ): Promise<{ sessionId: string; ticket: string; expiresAt: string; socketPath: string }> {
    const { container, tty, command } = body;
    const a = await this.admission.admit(
      req,
      { cluster, namespace, pod, container: container === '' ? undefined : container },
      { ok: true, value: command ?? DEFAULT_COMMAND },
      tty ?? true,
    );
    const scope = execSocketPath(cluster, namespace, pod);
    const { ticket, expiresAt } = await this.admission.tickets.issue({ ...a, scope });
    return {
      sessionId: a.sessionId,
      ticket,
      expiresAt: expiresAt.toISOString(),
      socketPath: `${scope}?ticket=${ticket}`,
    };
  }
}
