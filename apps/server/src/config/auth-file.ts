import type { ConfigProblem } from '@periscope/config';
import { parse } from 'yaml';

import { groupPrefixProblem, isSystemName } from '../common/system-names';
import {
  checkConfig,
  EmptyIsUnset,
  isBool,
  isRecord,
  isText,
  isTextList,
  isWhole,
  Required,
  Rule,
  Section,
  SectionList,
  show,
} from './config-dto';
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

const MAX_GROUPS = 256;
const MAX_GROUP = 256;
const MAX_DEV_USERS = 100;
const GROUPS = `a list of at most ${MAX_GROUPS} strings`;
const DEFAULT_SCOPES = ['openid', 'profile', 'email', 'offline_access', 'groups'];
const isTier = (v: unknown): v is TierName => (TIER_NAMES as readonly unknown[]).includes(v);
const TIERS = `one of ${TIER_NAMES.join(', ')}`;

class OidcDto {
  @EmptyIsUnset()
  @Required()
  @Rule('an http(s) URL of the OpenID provider', isText(2048, /^https?:\/\/\S+$/))
  issuer!: string;

  @EmptyIsUnset()
  @Required()
  @Rule('a string', isText(1024))
  clientID!: string;

  @EmptyIsUnset()
  @Rule('a string', isText(4096))
  clientSecret?: string;

  @EmptyIsUnset()
  @Rule('a string', isText(2048))
  redirectURL?: string;

  @Rule(GROUPS, isTextList(MAX_GROUPS, MAX_GROUP))
  @Rule('a list that includes openid', (v) => !Array.isArray(v) || v.includes('openid'))
  scopes?: string[];

  @EmptyIsUnset()
  @Rule('a string', isText(1024))
  audience?: string;

  @EmptyIsUnset()
  @Rule('a string', isText(256))
  providerName?: string;
}

class SessionDto {
  @EmptyIsUnset()
  @Rule('a cookie name (letters, digits, _ and -)', isText(128, /^[A-Za-z0-9_-]+$/))
  cookieName?: string;

  @Rule('a whole number from 60 to 86400', isWhole(60, 86_400))
  idleTimeoutSeconds?: number;

  @Rule(`a whole number from 300 to ${30 * 86_400}`, isWhole(300, 30 * 86_400))
  absoluteTimeoutSeconds?: number;
}

class AuthorizationDto {
  @Rule(`one of ${AUTHZ_MODES.join(', ')}`, (v) => (AUTHZ_MODES as readonly unknown[]).includes(v))
  mode?: AuthzMode;

  @EmptyIsUnset()
  @Rule('a string', isText(256))
  groupsClaim?: string;

  @Rule(GROUPS, isTextList(MAX_GROUPS, MAX_GROUP))
  allowedGroups?: string[];

  /** each entry's tier is checked below, so that the problem names the group */
  @Rule(
    `a mapping of IdP group to tier, at most ${MAX_GROUPS} entries`,
    (v) => isRecord(v) && Object.keys(v).length <= MAX_GROUPS,
  )
  groupTiers?: Record<string, unknown>;

  @EmptyIsUnset()
  @Rule(`${TIERS} (or empty)`, isTier)
  defaultTier?: TierName;

  @Rule(
    (v) =>
      `a prefix that keeps IdP groups apart from Kubernetes' system: groups (${typeof v === 'string' ? (groupPrefixProblem(v) ?? '') : 'it is not a string'}); use e.g. "periscope:" (the default)`,
    (v) => typeof v === 'string' && groupPrefixProblem(v) === undefined,
  )
  groupPrefix?: string;

  @Rule(GROUPS, isTextList(MAX_GROUPS, MAX_GROUP))
  auditAdminGroups?: string[];

  @Rule('true or false', isBool)
  allowAnyUser?: boolean;
}

class DevUserDto {
  @EmptyIsUnset()
  @Required()
  @Rule('a string', isText(256))
  subject!: string;

  @EmptyIsUnset()
  @Rule('a string', isText(256))
  email?: string;

  @Rule(GROUPS, isTextList(MAX_GROUPS, MAX_GROUP))
  groups?: string[];
}

class DevDto {
  @SectionList(() => DevUserDto, MAX_DEV_USERS, `a list of at most ${MAX_DEV_USERS} {subject, email, groups}`)
  users?: DevUserDto[];
}

class AuthFileDto {
  @Section(() => OidcDto)
  oidc?: OidcDto;

  @Section(() => SessionDto)
  session?: SessionDto;

  @Section(() => AuthorizationDto)
  authorization?: AuthorizationDto;

  @Section(() => DevDto)
  dev?: DevDto;
}

/** Problems no single field can see: tiers per group, and `system:` names wherever they appear. */
function crossChecks(f: AuthFileDto, at: (path: string) => string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const a = f.authorization;
  const groupTiers = isRecord(a?.groupTiers) ? a.groupTiers : {};
  for (const [group, tier] of Object.entries(groupTiers))
    if (!isTier(tier))
      problems.push({ setting: at(`authorization.groupTiers.${group}`), value: show(tier), allowed: TIERS });
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
  const list = (v: unknown): string[] => (isTextList(MAX_GROUPS, MAX_GROUP)(v) ? (v as string[]) : []);
  list(a?.allowedGroups).forEach((g, i) => {
    systemGroup(`authorization.allowedGroups[${i}]`, g);
  });
  list(a?.auditAdminGroups).forEach((g, i) => {
    systemGroup(`authorization.auditAdminGroups[${i}]`, g);
  });
  for (const g of Object.keys(groupTiers)) systemGroup(`authorization.groupTiers.${g}`, g);
  const users = Array.isArray(f.dev?.users) ? f.dev.users : [];
  users.forEach((u, i) => {
    if (!isRecord(u)) return;
    const p = `dev.users[${i}]`;
    if (typeof u.subject === 'string' && isSystemName(u.subject))
      problems.push({
        setting: at(`${p}.subject`),
        value: u.subject,
        allowed: `a subject that does not start with "system:" (Kubernetes' own users); use a person's name`,
      });
    list(u.groups).forEach((g, j) => {
      systemGroup(`${p}.groups[${j}]`, g);
    });
  });
  return problems;
}

/** Parses the auth file; every problem carries its path in the file. */
export function parseAuthFile(text: string, file: string): { auth: AuthSettings; problems: ConfigProblem[] } {
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
  const { value: f, problems } = checkConfig(AuthFileDto, doc, file);
  if (f === undefined) return { auth: DEFAULT_AUTH, problems };
  problems.push(...crossChecks(f, (path) => `${file}: ${path}`));
  if (problems.length > 0) return { auth: DEFAULT_AUTH, problems };

  const o = f.oidc;
  const oidc: OidcSettings | undefined =
    o === undefined
      ? undefined
      : {
          issuer: o.issuer,
          clientId: o.clientID,
          scopes: o.scopes ?? DEFAULT_SCOPES,
          ...(o.clientSecret !== undefined ? { clientSecret: o.clientSecret } : {}),
          ...(o.redirectURL !== undefined ? { redirectUrl: o.redirectURL } : {}),
          ...(o.audience !== undefined ? { audience: o.audience } : {}),
          ...(o.providerName !== undefined ? { providerName: o.providerName } : {}),
        };
  const s = f.session;
  const a = f.authorization;
  const auth: AuthSettings = {
    ...(oidc ? { oidc } : {}),
    session: {
      cookieName: s?.cookieName ?? DEFAULT_AUTH.session.cookieName,
      idleTimeoutSeconds: s?.idleTimeoutSeconds ?? DEFAULT_AUTH.session.idleTimeoutSeconds,
      absoluteTimeoutSeconds: s?.absoluteTimeoutSeconds ?? DEFAULT_AUTH.session.absoluteTimeoutSeconds,
    },
    authorization: {
      mode: a?.mode ?? DEFAULT_AUTH.authorization.mode,
      groupsClaim: a?.groupsClaim ?? DEFAULT_AUTH.authorization.groupsClaim,
      allowedGroups: a?.allowedGroups ?? [],
      groupTiers: Object.fromEntries(
        Object.entries(a?.groupTiers ?? {}).filter(([, t]) => isTier(t)),
      ) as Record<string, TierName>,
      ...(a?.defaultTier !== undefined ? { defaultTier: a.defaultTier } : {}),
      groupPrefix: a?.groupPrefix ?? DEFAULT_AUTH.authorization.groupPrefix,
      auditAdminGroups: a?.auditAdminGroups ?? [],
      allowAnyUser: a?.allowAnyUser === true,
    },
    devUsers: (f.dev?.users ?? []).map((u) => ({
      subject: u.subject,
      email: u.email ?? `${u.subject}@local`,
      groups: u.groups ?? [],
    })),
  };
  return { auth, problems };
}
