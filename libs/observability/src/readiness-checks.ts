export type ReadinessCheck = () => Promise<string | undefined> | string | undefined;

/**
 * Named readiness checks, without a framework (the agent imports this module alone). A check
 * returns undefined when healthy, or a short reason. Readiness turns false as soon as shutdown
 * begins (`shutdown()`), so load balancers and probes stop routing to us first.
 */
export class ReadinessChecks {
  private readonly checks = new Map<string, ReadinessCheck>();
  private shuttingDown = false;

  register(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  shutdown(): void {
    this.shuttingDown = true;
  }

  async evaluate(): Promise<{ ready: boolean; checks: Record<string, string> }> {
    const results: Record<string, string> = {};
    if (this.shuttingDown) results['shutdown'] = 'shutting down';
    for (const [name, check] of this.checks) {
      try {
        results[name] = (await check()) ?? 'ok';
      } catch (err) {
        results[name] = (err as Error).message;
      }
    }
    return { ready: Object.values(results).every((r) => r === 'ok'), checks: results };
  }
}
