import 'reflect-metadata';

import { webcrypto } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as x509 from '@peculiar/x509';
import { describe, expect, it } from 'vitest';

import { AgentCa } from './agent-ca';
import { AgentIdentities, describeCert, parseRecords } from './agent-identities';
import { DirectoryAgentRecords } from './ca-store';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

async function certFor(ca: AgentCa, cluster: string): Promise<string> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cluster}`,
    keys,
    signingAlgorithm: ALG,
  });
  return ca.signAgentCsr(csr.toString('pem'), cluster);
}

describe(AgentIdentities.name, () => {
  it('has one current certificate per cluster: registration supersedes, renewal needs the current one, revoke leaves none', async () => {
    const ca = await AgentCa.fromMaterial(await AgentCa.generate('CN=test-ca'));
    const dir = mkdtempSync(join(tmpdir(), 'periscope-identities-'));
    const ids = new AgentIdentities(new DirectoryAgentRecords(dir));
    await ids.init();
    const [a1, a2, a3, b1] = await Promise.all([
      certFor(ca, 'a'),
      certFor(ca, 'a'),
      certFor(ca, 'a'),
      certFor(ca, 'b'),
    ]);
    const fp = (pem: string): string => describeCert(pem).fingerprint;

    await ids.registered('a', a1);
    expect(await ids.verdict('a', describeCert(a1))).toBe('current');
    expect(await ids.verdict('a', describeCert(a2))).toBe('not_current');
    // renewal from a certificate that is not current is refused and changes nothing
    expect(await ids.renewed('a', fp(a2), a3)).toBe(false);
    expect(ids.isCurrent('a', fp(a1))).toBe(true);
    expect(await ids.renewed('a', fp(a1), a2)).toBe(true);
    expect(ids.isCurrent('a', fp(a1))).toBe(false);
    expect(ids.isCurrent('a', fp(a2))).toBe(true);
    expect(ids.record('a')?.current).toMatchObject({ how: 'renewed', serial: describeCert(a2).serial });
    // registering again supersedes the renewed one
    await ids.registered('a', a3);
    expect(await ids.verdict('a', describeCert(a2))).toBe('not_current');
    await ids.revoke('a', 'root');
    expect(await ids.verdict('a', describeCert(a3))).toBe('revoked');
    expect(ids.record('a')).toMatchObject({ current: null, revokedBy: 'root' });
    // a cluster without any record adopts its first certificate (registered before records existed)
    expect(await ids.verdict('b', describeCert(b1))).toBe('current');
    expect(ids.record('b')?.current?.how).toBe('adopted');

    // A second process on the same data directory sees the same state.
    const again = new AgentIdentities(new DirectoryAgentRecords(dir));
    await again.init();
    expect(again.record('a')).toMatchObject({ current: null, revokedBy: 'root' });
    expect(again.isCurrent('b', fp(b1))).toBe(true);
    const onDisk = JSON.parse(readFileSync(join(dir, 'agent-ca', 'agents.json'), 'utf8')) as object;
    expect(Object.keys(onDisk).sort()).toEqual(['a', 'b']);
  });

  it('serialises concurrent updates in one process (none lost)', async () => {
    const ca = await AgentCa.fromMaterial(await AgentCa.generate('CN=test-ca'));
    const dir = mkdtempSync(join(tmpdir(), 'periscope-identities-'));
    const ids = new AgentIdentities(new DirectoryAgentRecords(dir));
    await ids.init();
    const clusters = Array.from({ length: 12 }, (_, i) => `c${i}`);
    const certs = await Promise.all(clusters.map((c) => certFor(ca, c)));
    await Promise.all(clusters.map((c, i) => ids.registered(c, certs[i] ?? '')));
    const fresh = new AgentIdentities(new DirectoryAgentRecords(dir));
    await fresh.init();
    for (const [i, c] of clusters.entries())
      expect(fresh.isCurrent(c, describeCert(certs[i] ?? '').fingerprint), c).toBe(true);
  });

  it('drops malformed records instead of trusting them', () => {
    expect(parseRecords('not json')).toEqual({});
    expect(parseRecords('[1,2]')).toEqual({});
    expect(
      parseRecords(
        JSON.stringify({
          ok: { current: null, revokedBy: 'root' },
          bad: { current: { fingerprint: 1 } },
          worse: 'x',
          good: {
            current: { fingerprint: 'ab', serial: '01', notAfter: 'n', since: 's', how: 'registered' },
          },
        }),
      ),
    ).toEqual({
      ok: { current: null, revokedBy: 'root' },
      good: { current: { fingerprint: 'ab', serial: '01', notAfter: 'n', since: 's', how: 'registered' } },
    });
  });
});
