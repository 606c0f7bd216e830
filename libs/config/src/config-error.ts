import type { ConfigProblem } from './env-spec';

/** Thrown once at start-up with every problem found; the message is meant for an operator. */
export class ConfigError extends Error {
  readonly code = 'E_CONFIG';

  constructor(
    readonly component: string,
    readonly problems: readonly ConfigProblem[],
  ) {
    super(ConfigError.format(component, problems));
    this.name = 'ConfigError';
  }

  static format(component: string, problems: readonly ConfigProblem[]): string {
    const lines = problems.map((p) => {
      const value = p.value === undefined ? '' : ` = ${JSON.stringify(p.value)}`;
      return `  - ${p.setting}${value}: expected ${p.allowed}`;
    });
    return `invalid ${component} configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${lines.join('\n')}`;
  }
}
