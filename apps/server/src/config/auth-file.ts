import type { ConfigProblem } from '@periscope/config';
import { parse } from 'yaml';

import { groupPrefixProblem, isSystemName } from '../auth/system-names';
import { TIER_NAMES, type TierName } from './server-env';

export const AUTHZ_MODES = ['shared', 'tier', 'raw'] as const;
export type AuthzMode = (typeof AUTHZ_MODES)[number];

export interface OidcSettings {
  issuer: string;
  clientId: string;
  clientSecret?: string;
  redirectUrl?: string;
  scopes: string[];
  audience?: string;
  providerName?: string;
}

export interface DevUser {
  subject: string;
  email: string;
  groups: string[];
}

export interface AuthSettings {
  oidc?: OidcSettings;
  session: { cookieName: string; idleTimeoutSeconds: number; absoluteTimeoutSeconds: number };
  authorization: {
    mode: AuthzMode;
    groupsClaim: string;
    allowedGroups: string[];
    groupTiers: Record<string, TierName>;
    defaultTier?: TierName;
    groupPrefix: string;
    auditAdminGroups: string[];
    /**
     * Explicit opt-in to OIDC sign-in in shared mode without allowedGroups (every account of the
     * provider acting as the server's own identity); start-up is refused without it.
     */
    allowAnyUser: boolean;
  };
  devUsers: DevUser[];
}

export const DEFAULT_AUTH: AuthSettings = {
  session: { cookieName: 'periscope_session', idleTimeoutSeconds: 1800, absoluteTimeoutSeconds: 28_800 },
  authorization: {
    mode: 'shared',
    groupsClaim: 'groups',
    allowedGroups: [],
    groupTiers: {},
    groupPrefix: 'periscope:',
    auditAdminGroups: [],
    allowAnyUser: false,
  },
  devUsers: [],
};

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));
const isTier = (v: unknown): v is TierName =>
  typeof v === 'string' && (TIER_NAMES as readonly string[]).includes(v);

/** Parses the auth file; every problem carries its path in the file. */
export function parseAuthFile(text: string, file: string): { auth: AuthSettings; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const at = (path: string): string => `${file}: ${path}`;
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    return {
      auth: DEFAULT_AUTH,
      problems: [{ setting: file, allowed: `valid YAML (${(err as Error).message.split('\n')[0] ?? ''})` }],
    };
  }
  doc ??= {};
  if (!isRecord(doc)) return { auth: DEFAULT_AUTH, problems: [{ setting: file, allowed: 'a YAML mapping' }] };

  const section = (key: string): Record<string, unknown> => {
    const v = doc[key];
    if (v === undefined || v === null) return {};
    if (!isRecord(v)) {
      problems.push({ setting: at(key), value: show(v), allowed: 'a mapping' });
      return {};
    }
    return v;
  };
  const strOf = (
    obj: Record<string, unknown>,
    path: string,
    key: string,
    required = false,
  ): string | undefined => {
    const v = obj[key];
    if (v === undefined || v === null || v === '') {
      if (required) problems.push({ setting: at(`${path}.${key}`), allowed: 'a value' });
      return undefined;
    }
    if (typeof v !== 'string') {
      problems.push({ setting: at(`${path}.${key}`), value: show(v), allowed: 'a string' });
      return undefined;
    }
    return v;
  };
  const listOf = (obj: Record<string, unknown>, path: string, key: string, dflt: string[]): string[] => {
    const v = obj[key];
    if (v === undefined || v === null) return dflt;
    if (!Array.isArray(v) || v.some((i) => typeof i !== 'string')) {
      problems.push({ setting: at(`${path}.${key}`), value: show(v), allowed: 'a list of strings' });
      return dflt;
    }
    return v as string[];
  };
  const intOf = (
    obj: Record<string, unknown>,
    path: string,
    key: string,
    dflt: number,
    min: number,
    max: number,
  ): number => {
    const v = obj[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      problems.push({
        setting: at(`${path}.${key}`),
        value: show(v),
        allowed: `a whole number from ${min} to ${max}`,
      });
      return dflt;
    }
    return v;
  };

  const o = section('oidc');
  let oidc: OidcSettings | undefined;
  if (Object.keys(o).length > 0) {
    const issuer = strOf(o, 'oidc', 'issuer', true);
    if (issuer !== undefined && !/^https?:\/\/\S+$/.test(issuer)) {
      problems.push({
        setting: at('oidc.issuer'),
        value: issuer,
        allowed: 'an http(s) URL of the OpenID provider',
      });
    }
    const clientId = strOf(o, 'oidc', 'clientID', true);
    const clientSecret = strOf(o, 'oidc', 'clientSecret');
    const redirectUrl = strOf(o, 'oidc', 'redirectURL');
    const audience = strOf(o, 'oidc', 'audience');
    const providerName = strOf(o, 'oidc', 'providerName');
    const scopes = listOf(o, 'oidc', 'scopes', ['openid', 'profile', 'email', 'offline_access', 'groups']);
    if (!scopes.includes('openid'))
      problems.push({
        setting: at('oidc.scopes'),
        value: show(scopes),
        allowed: 'a list that includes openid',
      });
    if (issuer !== undefined && clientId !== undefined) {
      oidc = {
        issuer,
        clientId,
        scopes,
        ...(clientSecret !== undefined ? { clientSecret } : {}),
        ...(redirectUrl !== undefined ? { redirectUrl } : {}),
        ...(audience !== undefined ? { audience } : {}),
        ...(providerName !== undefined ? { providerName } : {}),
      };
    }
  }

  const s = section('session');
  const session = {
    cookieName: strOf(s, 'session', 'cookieName') ?? DEFAULT_AUTH.session.cookieName,
    idleTimeoutSeconds: intOf(
      s,
      'session',
      'idleTimeoutSeconds',
      DEFAULT_AUTH.session.idleTimeoutSeconds,
      60,
      86_400,
    ),
    absoluteTimeoutSeconds: intOf(
      s,
      'session',
      'absoluteTimeoutSeconds',
      DEFAULT_AUTH.session.absoluteTimeoutSeconds,
      300,
      30 * 86_400,
    ),
  };

  const a = section('authorization');
  const modeRaw = a['mode'] ?? 'shared';
  let mode: AuthzMode = 'shared';
  if (typeof modeRaw === 'string' && (AUTHZ_MODES as readonly string[]).includes(modeRaw))
    mode = modeRaw as AuthzMode;
  else
    problems.push({
      setting: at('authorization.mode'),
      value: show(modeRaw),
      allowed: `one of ${AUTHZ_MODES.join(', ')}`,
    });
  const groupTiers: Record<string, TierName> = {};
  const gt = a['groupTiers'];
  if (gt !== undefined && gt !== null) {
    if (!isRecord(gt))
      problems.push({
        setting: at('authorization.groupTiers'),
        value: show(gt),
        allowed: 'a mapping of IdP group to tier',
      });
    else
      for (const [group, tier] of Object.entries(gt)) {
        if (isTier(tier)) groupTiers[group] = tier;
        else
          problems.push({
            setting: at(`authorization.groupTiers.${group}`),
            value: show(tier),
            allowed: `one of ${TIER_NAMES.join(', ')}`,
          });
      }
  }
  const dt = a['defaultTier'];
  let defaultTier: TierName | undefined;
  if (dt !== undefined && dt !== null && dt !== '') {
    if (isTier(dt)) defaultTier = dt;
    else
      problems.push({
        setting: at('authorization.defaultTier'),
        value: show(dt),
        allowed: `one of ${TIER_NAMES.join(', ')} (or empty)`,
      });
  }
  let groupPrefix = DEFAULT_AUTH.authorization.groupPrefix;
  const gp = a['groupPrefix'];
  if (gp !== undefined && gp !== null) {
    const why = typeof gp === 'string' ? groupPrefixProblem(gp) : 'it is not a string';
    if (why === undefined) groupPrefix = gp as string;
    else
      problems.push({
        setting: at('authorization.groupPrefix'),
        value: show(gp),
        allowed: `a prefix that keeps IdP groups apart from Kubernetes' system: groups (${why}); use e.g. "periscope:" (the default)`,
      });
  }
  const allowAny = a['allowAnyUser'];
  if (allowAny !== undefined && allowAny !== null && typeof allowAny !== 'boolean')
    problems.push({
      setting: at('authorization.allowAnyUser'),
      value: show(allowAny),
      allowed: 'true or false',
    });
  const authorization = {
    mode,
    groupsClaim: strOf(a, 'authorization', 'groupsClaim') ?? 'groups',
    allowedGroups: listOf(a, 'authorization', 'allowedGroups', []),
    groupTiers,
    ...(defaultTier !== undefined ? { defaultTier } : {}),
    groupPrefix,
    auditAdminGroups: listOf(a, 'authorization', 'auditAdminGroups', []),
    allowAnyUser: allowAny === true,
  };
  // IdP groups starting with system: are dropped at sign-in, so naming one here is a mistake.
  const systemGroup = (path: string, group: string): void => {
    if (isSystemName(group))
      problems.push({
        setting: at(path),
        value: group,
        allowed:
          'a group that does not start with "system:" (Kubernetes reserves those; Periscope drops such IdP groups at sign-in, so this entry could never match)',
      });
  };
  authorization.allowedGroups.forEach((g, i) => {
    systemGroup(`authorization.allowedGroups[${i}]`, g);
  });
  authorization.auditAdminGroups.forEach((g, i) => {
    systemGroup(`authorization.auditAdminGroups[${i}]`, g);
  });
  for (const g of Object.keys(groupTiers)) systemGroup(`authorization.groupTiers.${g}`, g);

  const d = section('dev');
  const devUsers: DevUser[] = [];
  const users = d['users'];
  if (users !== undefined && users !== null) {
    if (!Array.isArray(users))
      problems.push({
        setting: at('dev.users'),
        value: show(users),
        allowed: 'a list of {subject, email, groups}',
      });
    else
      users.forEach((u: unknown, i: number) => {
        const p = `dev.users[${i}]`;
        if (!isRecord(u)) {
          problems.push({ setting: at(p), value: show(u), allowed: 'a mapping with subject, email, groups' });
          return;
        }
        const subject = strOf(u, p, 'subject', true);
        const email = strOf(u, p, 'email') ?? `${subject ?? 'dev'}@local`;
        const groups = listOf(u, p, 'groups', []);
        if (subject !== undefined && isSystemName(subject))
          problems.push({
            setting: at(`${p}.subject`),
            value: subject,
            allowed: `a subject that does not start with "system:" (Kubernetes' own users); use a person's name`,
          });
        groups.forEach((g, j) => {
          systemGroup(`${p}.groups[${j}]`, g);
        });
        if (subject !== undefined) devUsers.push({ subject, email, groups });
      });
  }
  return { auth: { ...(oidc ? { oidc } : {}), session, authorization, devUsers }, problems };
}
