import type { TestClusterClient } from '../k8s/cluster';

/** Who asks: a user name with its groups, as the apiserver would see them after authentication. */
export interface Identity {
  label: string;
  user: string;
  groups: string[];
}

export function serviceAccount(namespace: string, name: string): Identity {
  return {
    label: `sa ${namespace}/${name}`,
    user: `system:serviceaccount:${namespace}:${name}`,
    groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
  };
}

/** An operator as Periscope impersonates them in tier mode: their subject and one tier group. */
export function operator(tier: string): Identity {
  return {
    label: `operator in periscope-tier:${tier}`,
    user: 'carol@example.com',
    groups: [`periscope-tier:${tier}`, 'system:authenticated'],
  };
}

interface ResourceAttributes {
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  name?: string;
  namespace?: string;
}

/**
 * Parses "<verb> [<group>:]<resource>[/<subresource>] [name=<name>] [in <namespace>]", e.g.
 * "create serviceaccounts/token name=periscope-shell-admin in shells" or
 * "impersonate authentication.k8s.io:userextras/audit.periscope.io/actor". Without "in" the
 * check is cluster-wide (all namespaces).
 */
export function parseAccess(spec: string): ResourceAttributes {
  const m = /^(\S+) (?:([^\s:]+):)?([^\s/]+)(?:\/(\S+))?(?: name=(\S+))?(?: in (\S+))?$/.exec(spec);
  if (!m) throw new Error(`cannot parse access "${spec}"`);
  const [, verb, group, resource, subresource, name, namespace] = m;
  return {
    verb: verb!,
    group: group ?? '',
    resource: resource!,
    ...(subresource !== undefined ? { subresource } : {}),
    ...(name !== undefined ? { name } : {}),
    ...(namespace !== undefined ? { namespace } : {}),
  };
}

export interface Expectation {
  who: Identity;
  access: string;
  allowed: boolean;
}

export const allow = (who: Identity, ...access: string[]): Expectation[] =>
  access.map((a) => ({ who, access: a, allowed: true }));
export const deny = (who: Identity, ...access: string[]): Expectation[] =>
  access.map((a) => ({ who, access: a, allowed: false }));

/** Splits kubectl's output for several created objects: JSON documents one after another. */
export function jsonStream(text: string): unknown[] {
  const docs: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') {
      if (depth++ === 0) start = i;
    } else if (c === '}' && --depth === 0) docs.push(JSON.parse(text.slice(start, i + 1)));
  }
  return docs;
}

interface SarStatus {
  status?: { allowed?: boolean; denied?: boolean; reason?: string };
}

/**
 * Asks the apiserver's authorizer about every expectation in one SubjectAccessReview batch and
 * returns the ones it answers differently, as readable lines (empty when all hold).
 */
export async function accessMismatches(
  cluster: TestClusterClient,
  expectations: Expectation[],
): Promise<string[]> {
  const items = expectations.map((e) => ({
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: { user: e.who.user, groups: e.who.groups, resourceAttributes: parseAccess(e.access) },
  }));
  const out = await cluster.kubectlOk(['create', '-f', '-', '-o', 'json'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items }),
  });
  // One object prints alone, several print one after another (or as a List in some versions).
  const docs = jsonStream(out) as (SarStatus & { kind?: string; items?: SarStatus[] })[];
  const results = docs.length === 1 && docs[0]?.kind === 'List' ? (docs[0].items ?? []) : docs;
  if (results.length !== expectations.length)
    throw new Error(`asked ${expectations.length} reviews, got ${results.length} answers`);
  return expectations.flatMap((e, i) => {
    const allowed = results[i]?.status?.allowed === true;
    return allowed === e.allowed
      ? []
      : [`${e.who.label} ${e.allowed ? 'should' : 'should NOT'} be able to: ${e.access}`];
  });
}
