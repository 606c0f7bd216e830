import { certValidity, newKeyAndCsr, renewAt } from './agent-keys';
import { register, RegistrationError } from './registration';
import type { AgentState, AgentStateStore } from './state-store';

export interface IdentityOptions {
  cluster: string;
  registrationUrl: string;
  registrationToken?: string;
  serverCaHash?: string;
  store: AgentStateStore;
  log: {
    info(o: object, m: string): void;
    warn(o: object, m: string): void;
    error(o: object, m: string): void;
  };
}

/** Longest single timer Node allows (~24.8 days); longer waits are split. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The agent's identity: loaded from its state Secret, or created once by registering with a
 * single-use token (the key is generated here and never leaves the agent). Renewed over the
 * tunnel when two thirds of the certificate's lifetime have passed, without dropping the tunnel.
 */
export class AgentIdentity {
  private current: AgentState | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: IdentityOptions) {}

  get state(): AgentState {
    if (!this.current) throw new Error('agent identity not loaded');
    return this.current;
  }

  async ensure(): Promise<AgentState> {
    const existing = await this.opts.store.load();
    if (existing) {
      this.opts.log.info(
        { notAfter: certValidity(existing.certPem).notAfter },
        'agent identity loaded from the state Secret',
      );
      this.current = existing;
      return existing;
    }
    const token = this.opts.registrationToken;
    if (token === undefined) {
      throw new RegistrationError(
        'no state Secret and no PERISCOPE_REGISTRATION_TOKEN: mint a token (POST /api/agents/tokens) and set it',
        true,
      );
    }
    const { keyPem, csrPem } = await newKeyAndCsr(this.opts.cluster);
    const result = await register(
      this.opts.registrationUrl,
      { token, cluster: this.opts.cluster, csr: csrPem },
      this.opts.serverCaHash,
    );
    const state = await this.opts.store.create({
      keyPem,
      certPem: result.certificate,
      caPem: result.caBundle,
      tunnelUrl: result.tunnelUrl,
    });
    this.opts.log.info(
      { notAfter: certValidity(state.certPem).notAfter, tunnelUrl: state.tunnelUrl },
      'agent registered',
    );
    this.current = state;
    return state;
  }

  /** Schedules renewal through `sign` (the tunnel); retries every minute on failure. */
  scheduleRenewal(sign: (csrPem: string) => Promise<string>): void {
    if (this.timer) clearTimeout(this.timer);
    const due = renewAt(this.state.certPem).getTime();
    const wait = Math.min(MAX_TIMER_MS, Math.max(60_000, due - Date.now()));
    this.timer = setTimeout(() => {
      if (Date.now() < due) {
        this.scheduleRenewal(sign);
        return;
      }
      void this.renew(sign).finally(() => {
        this.scheduleRenewal(sign);
      });
    }, wait);
    this.timer.unref();
  }

  async renew(sign: (csrPem: string) => Promise<string>): Promise<void> {
    try {
      const { keyPem, csrPem } = await newKeyAndCsr(this.opts.cluster);
      const certPem = await sign(csrPem);
      const next = { ...this.state, keyPem, certPem };
      await this.opts.store.update(next);
      this.current = next;
      this.opts.log.info({ notAfter: certValidity(certPem).notAfter }, 'agent certificate renewed');
    } catch (err) {
      // scheduleRenewal() runs next and retries in a minute, since the due time has passed.
      this.opts.log.warn({ err: (err as Error).message }, 'agent certificate renewal failed; will retry');
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}
