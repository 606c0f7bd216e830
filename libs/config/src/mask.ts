const SECRET_KEY = /(secret|token|password|passphrase|privatekey|credential)/i;

/**
 * A copy of a configuration tree safe to log: every value under a key that looks secret, and every
 * key listed in `extraSecretKeys`, is replaced by "<redacted>" (empty values stay visibly empty).
 */
export function maskSecrets(value: unknown, extraSecretKeys: readonly string[] = []): unknown {
  const secretKeys = new Set(extraSecretKeys);
  const walk = (v: unknown, key: string | undefined): unknown => {
    if (key !== undefined && (secretKeys.has(key) || SECRET_KEY.test(key)) && !isStructure(v)) {
      return v === undefined || v === '' || v === null ? v : '<redacted>';
    }
    if (Array.isArray(v)) return v.map((item) => walk(item, undefined));
    if (v !== null && typeof v === 'object' && !(v instanceof RegExp)) {
      return Object.fromEntries(Object.entries(v).map(([k, inner]) => [k, walk(inner, k)]));
    }
    return v;
  };
  return walk(value, undefined);
}

function isStructure(v: unknown): boolean {
  return v !== null && typeof v === 'object';
}
