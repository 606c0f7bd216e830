import { randomUUID } from 'node:crypto';

import { DirectGateway, shellObjectName, ShellProvisioner } from '@periscope/cluster-ops';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { SHELL_NS, startShellCluster } from './shell-cluster';

const jwtExp = (token: string): number =>
  (JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { exp: number }).exp;

/**
 * An apiserver that caps token lifetimes (`--service-account-max-token-expiration=1h`) while a
 * session may last longer: the gateway schedules rotation, a rotation writes a fresh, valid token
 * into the session Secret, and teardown stops it and invalidates the token.
 */
describe('session token rotation when the apiserver caps lifetimes', () => {
  let env: Awaited<ReturnType<typeof startShellCluster>>;

  beforeAll(async () => {
    env = await startShellCluster(inject('cluster').binDir, {
      apiserverArgs: [
        '--service-account-max-token-expiration=1h',
        '--service-account-extend-token-expiration=false',
      ],
    });
  });

  afterAll(async () => {
    await env.stop();
  });

  const tokenInSecret = async (name: string): Promise<string> => {
    const kubeconfig = Buffer.from(
      await env.cluster.kubectlOk([
        '-n',
        SHELL_NS,
        'get',
        'secret',
        name,
        '-o',
        'jsonpath={.data.kubeconfig}',
      ]),
      'base64',
    ).toString();
    const m = /token: (\S+)/.exec(kubeconfig);
    if (!m?.[1]) throw new Error('no token in the session kubeconfig');
    return m[1];
  };
  const whoamiWith = (token: string) =>
    env.cluster.kubectl([
      '--token',
      token,
      '--kubeconfig',
      '/dev/null',
      '--server',
      env.cluster.info.url,
      '--certificate-authority',
      env.cluster.info.caFile,
      'auth',
      'whoami',
      '-o',
      'jsonpath={.status.userInfo.username}',
    ]);

  it('rotates a capped token into the Secret, and stops at teardown', async () => {
    const gateway = new DirectGateway(env.provisionerKc, { preferClusterInfo: true });
    const sessionId = randomUUID();
    const name = shellObjectName(sessionId);
    const req = {
      sessionId,
      namespace: SHELL_NS,
      tier: 'admin',
      subject: 'alice@example.com',
      image: env.image,
      imagePullPolicy: 'IfNotPresent' as const,
      mode: 'bash',
      tokenSeconds: 4 * 3600,
      podStartTimeoutMs: 30_000,
    };
    await gateway.provisionShell(req);
    const first = await tokenInSecret(name);
    const lifetime = jwtExp(first) - Math.floor(Date.now() / 1000);
    expect(lifetime).toBeLessThanOrEqual(3600); // the apiserver granted 1 h, not 4
    expect(gateway.rotations.size).toBe(1); // so a rotation is scheduled

    const { caPem, server } = await gateway.clusterCa();
    const rotated = await new ShellProvisioner(env.provisionerKc).rotateToken({ ...req, server, caPem });
    expect(rotated.tokenExpiresAt.getTime()).toBeGreaterThan(Date.now() + 3000 * 1000);
    const second = await tokenInSecret(name);
    expect(second).not.toBe(first);
    const who = await whoamiWith(second);
    expect(who.stdout).toBe(`system:serviceaccount:${SHELL_NS}:${name}`);

    await gateway.teardownShell({ sessionId, namespace: SHELL_NS });
    expect(gateway.rotations.size).toBe(0);
    // The tokens are bound to the Secret: once it is gone they are refused.
    await env.cluster.waitFor(
      'the rotated token to be refused',
      async () => (await whoamiWith(second)).code !== 0,
    );
  }, 120_000);
});
