import { createHash, X509Certificate } from 'node:crypto';

/** The certificate a cluster's agent may connect with, as the server recorded it. */
export interface AgentCertificate {
  /** SHA-256 of the certificate (DER), lower-case hex */
  fingerprint: string;
  /** serial number, lower-case hex */
  serial: string;
  notAfter: string;
  /** when it became current */
  since: string;
  /** how: signed at registration, at renewal, or adopted (first connect of an agent registered
   * before certificates were recorded) */
  how: 'registered' | 'renewed' | 'adopted';
}

/** One cluster's record: its current certificate, or none because an admin revoked it. */
export interface AgentRecord {
  current: AgentCertificate | null;
  revokedAt?: string;
  revokedBy?: string;
}

export type AgentRecords = Record<string, AgentRecord>;

/**
 * Where the records live (next to the agent CA: the data directory or a Secret). `update` runs
 * `change` on the freshest stored records and stores the result atomically (retrying on a
 * concurrent writer), so several replicas never lose each other's writes.
 */
export interface AgentRecordStore {
  load(): Promise<AgentRecords>;
  update(change: (records: AgentRecords) => AgentRecords): Promise<AgentRecords>;
}

/** A presented certificate, as TLS reports it. */
export interface PresentedCert {
  fingerprint: string;
  serial: string;
  notAfter: string;
}

export type CertVerdict = 'current' | 'revoked' | 'not_current';

/** `AB:CD:…` or `abcd…` to `abcd…`. */
export function normalizeHex(hex: string): string {
  return hex.replace(/:/g, '').toLowerCase();
}

/** Fingerprint, serial and expiry of a PEM certificate. */
export function describeCert(certPem: string): PresentedCert {
  const c = new X509Certificate(certPem);
  return {
    fingerprint: createHash('sha256').update(c.raw).digest('hex'),
    serial: normalizeHex(c.serialNumber),
    notAfter: new Date(c.validTo).toISOString(),
  };
}

const RELOAD_EVERY_MS = 5_000;

/**
 * Which certificate is current for each agent cluster. Exactly one certificate per cluster
 * connects: the one signed at the last registration or renewal. Registering again supersedes
 * the previous one; an admin can revoke a cluster (none is current until it registers again).
 * Clusters registered before records existed adopt the first valid certificate that connects.
 *
 * Reads come from a cache; a certificate the cache does not know makes one reload from the store
 * (at most every 5 s), so a renewal another replica recorded is seen.
 */
export class AgentIdentities {
  private records: AgentRecords = {};
  /** bumped by every local write, so a slower reload never replaces a newer local write */
  private writes = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private lastLoad = 0;
  private loading: Promise<void> | undefined;

  constructor(
    private readonly store: AgentRecordStore,
    private readonly now: () => number = () => Date.now(),
  ) {}

  async init(): Promise<void> {
    this.records = await this.store.load();
    this.lastLoad = this.now();
  }

  record(cluster: string): AgentRecord | undefined {
    return this.records[cluster];
  }

  /** Synchronous check against the cache: is this fingerprint the cluster's current one? */
  isCurrent(cluster: string, fingerprint: string | undefined): boolean {
    return fingerprint !== undefined && this.records[cluster]?.current?.fingerprint === fingerprint;
  }

  /**
   * The verdict on a certificate presented for `cluster` (its chain, name and usage already
   * checked). A cluster with no record adopts it.
   */
  async verdict(cluster: string, cert: PresentedCert): Promise<CertVerdict> {
    const cached = this.judge(cluster, cert.fingerprint);
    if (cached === 'current') return cached;
    await this.maybeReload();
    const judged = this.judge(cluster, cert.fingerprint);
    if (judged !== undefined) return judged;
    // No record at all: an agent registered before certificates were recorded. Another replica
    // may adopt or register first; the stored record decides.
    const since = new Date(this.now()).toISOString();
    this.records = await this.write((r) =>
      r[cluster] !== undefined ? r : { ...r, [cluster]: { current: { ...cert, since, how: 'adopted' } } },
    );
    return this.judge(cluster, cert.fingerprint) ?? 'not_current';
  }

  /** Registration: the new certificate is current, whatever was before (also after a revoke). */
  async registered(cluster: string, certPem: string): Promise<AgentCertificate> {
    const current: AgentCertificate = {
      ...describeCert(certPem),
      since: new Date(this.now()).toISOString(),
      how: 'registered',
    };
    this.records = await this.write((r) => ({ ...r, [cluster]: { current } }));
    return current;
  }

  /**
   * Renewal over a connection authenticated with `from`: the new certificate becomes current,
   * only if `from` still is (compare-and-set against the store). Answers false when it is not.
   */
  async renewed(cluster: string, from: string, certPem: string): Promise<boolean> {
    const current: AgentCertificate = {
      ...describeCert(certPem),
      since: new Date(this.now()).toISOString(),
      how: 'renewed',
    };
    this.records = await this.write((r) =>
      r[cluster]?.current?.fingerprint === from ? { ...r, [cluster]: { current } } : r,
    );
    return this.records[cluster]?.current?.fingerprint === current.fingerprint;
  }

  /** An admin revoked the cluster's agent: no certificate is current until it registers again. */
  async revoke(cluster: string, by: string): Promise<AgentRecord> {
    const rec: AgentRecord = { current: null, revokedAt: new Date(this.now()).toISOString(), revokedBy: by };
    this.records = await this.write((r) => ({ ...r, [cluster]: rec }));
    return rec;
  }

  /** One write at a time from this process, so the cache always ends with the latest one. */
  private write(change: (records: AgentRecords) => AgentRecords): Promise<AgentRecords> {
    this.writes++;
    const run = this.queue.then(() => this.store.update(change));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private judge(cluster: string, fingerprint: string): CertVerdict | undefined {
    const rec = this.records[cluster];
    if (rec === undefined) return undefined;
    if (rec.current === null) return 'revoked';
    return rec.current.fingerprint === fingerprint ? 'current' : 'not_current';
  }

  /** Reads the stored records again now (another replica changed them). */
  async reload(): Promise<void> {
    if (this.loading) await this.loading;
    this.lastLoad = Number.NEGATIVE_INFINITY;
    await this.maybeReload();
  }

  private async maybeReload(): Promise<void> {
    if (this.now() - this.lastLoad < RELOAD_EVERY_MS) return;
    const writes = this.writes;
    this.loading ??= this.store
      .load()
      .then((r) => {
        if (this.writes === writes) this.records = r;
        this.lastLoad = this.now();
      })
      .finally(() => {
        this.loading = undefined;
      });
    await this.loading;
  }
}

/** Records parsed from storage; anything malformed is dropped (and then re-adopted or re-registered). */
export function parseRecords(text: string): AgentRecords {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return {};
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return {};
  const out: AgentRecords = {};
  for (const [cluster, v] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof v !== 'object' || v === null) continue;
    const rec = v as Record<string, unknown>;
    const cur = rec['current'];
    if (cur === null) {
      out[cluster] = {
        current: null,
        ...(typeof rec['revokedAt'] === 'string' ? { revokedAt: rec['revokedAt'] } : {}),
        ...(typeof rec['revokedBy'] === 'string' ? { revokedBy: rec['revokedBy'] } : {}),
      };
    } else if (typeof cur === 'object') {
      const c = cur as Record<string, unknown>;
      if (
        typeof c['fingerprint'] === 'string' &&
        typeof c['serial'] === 'string' &&
        typeof c['notAfter'] === 'string' &&
        typeof c['since'] === 'string' &&
        (c['how'] === 'registered' || c['how'] === 'renewed' || c['how'] === 'adopted')
      )
        out[cluster] = {
          current: {
            fingerprint: c['fingerprint'],
            serial: c['serial'],
            notAfter: c['notAfter'],
            since: c['since'],
            how: c['how'],
          },
        };
    }
  }
  return out;
}
