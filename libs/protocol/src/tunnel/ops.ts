/**
 * Cluster operations the server asks an agent to run (control plane): each request and reply is
 * a DTO class whose rules are checked on arrival (see `TUNNEL_OPS` in contract.ts). A bad request
 * is answered with E_RPC_BAD_REQUEST, never executed; a bad reply fails with E_BAD_REPLY.
 */
import {
  ArrayMaxSize,
  Equals,
  IsArray,
  IsBoolean,
  IsEmpty,
  IsIn,
  IsInt,
  IsString,
  Length,
  Matches,
  Max,
  MaxLength,
  Min,
} from 'class-validator';

import {
  IsMap,
  IsText,
  Nested,
  NestedList,
  OptionalField,
  WIRE_PATTERN,
  ACCESS_TIERS,
} from '../validation/rules';

export const CLUSTER_OP = {
  ca: 'cluster.ca',
  provision: 'shell.provision',
  teardown: 'shell.teardown',
  reap: 'shell.reap',
  readFile: 'pod.readFile',
  listPods: 'pods.list',
} as const;
export type ClusterOp = (typeof CLUSTER_OP)[keyof typeof CLUSTER_OP];

const SESSION_ID = { message: '$property must be a session id (a UUID)' };
const EACH_SESSION_ID = { each: true, message: 'each value in $property must be a session id (a UUID)' };
const EACH_NAMESPACE = {
  each: true,
  message: 'each value in $property must be a namespace name (DNS label)',
};
const EACH_CONTAINER = {
  each: true,
  message: 'each value in $property must be a container name (DNS label)',
};
const NAMESPACE = { message: '$property must be a namespace name (DNS label)' };
const POD_NAME = { message: '$property must be a pod name (DNS subdomain)' };
const CONTAINER = { message: '$property must be a container name (DNS label)' };

const isString = (v: unknown): v is string => typeof v === 'string';
/** label and node-selector maps: Kubernetes bounds keys to 317 and values to 63 characters */
const LABEL_MAP = {
  maxKeys: 64,
  key: (k: string) => k.length > 0 && k.length <= 320,
  value: (v: unknown) => isString(v) && v.length <= 4096,
  what: 'strings to strings',
};

/** Operations that take no parameters (whatever is sent is dropped). */
export class NoPayload {
  /** class-validator refuses a class without rules; this field is never sent */
  @IsEmpty() readonly none?: undefined;
}

const RESOURCE_MAP = {
  maxKeys: 8,
  key: (k: string) => ['cpu', 'memory', 'ephemeral-storage'].includes(k),
  value: (v: unknown) => isString(v) && /^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/.test(v),
  what: 'cpu, memory or ephemeral-storage to quantities',
};
const ANNOTATION_MAP = {
  maxKeys: 64,
  key: (k: string) => k.length > 0 && k.length <= 320,
  value: (v: unknown) => isString(v) && v.length <= 4096,
  what: 'strings to strings',
};

/** Requests and limits of the session pod's container. */
export class ShellPodResourcesSpec {
  @OptionalField() @IsMap(RESOURCE_MAP) requests?: Record<string, string>;
  @OptionalField() @IsMap(RESOURCE_MAP) limits?: Record<string, string>;
}

/** One toleration of the session pod (Kubernetes' fields). */
export class ShellTolerationSpec {
  @OptionalField() @IsString() @MaxLength(320) key?: string;
  @OptionalField() @IsIn(['Exists', 'Equal']) operator?: 'Exists' | 'Equal';
  @OptionalField() @IsString() @MaxLength(63) value?: string;
  @OptionalField() @IsIn(['NoSchedule', 'PreferNoSchedule', 'NoExecute']) effect?:
    'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
  @OptionalField() @IsInt() @Min(0) @Max(31_536_000) tolerationSeconds?: number;
}

export class ShellProvisionRequest {
  @Matches(WIRE_PATTERN.uuid, SESSION_ID) sessionId!: string;
  @Matches(WIRE_PATTERN.dnsLabel, NAMESPACE) namespace!: string;
  @IsIn(ACCESS_TIERS) tier!: string;
  @IsText(512) subject!: string;
  @IsString()
  @MaxLength(512)
  @Matches(/^\S+$/, { message: '$property must be an image reference' })
  image!: string;
  @IsIn(['Always', 'IfNotPresent', 'Never']) imagePullPolicy!: 'Always' | 'IfNotPresent' | 'Never';
  @IsIn(['bash', 'kubectl']) mode!: string;
  @IsInt() @Min(600) @Max(7 * 86_400) tokenSeconds!: number;
  @IsInt() @Min(1000) @Max(600_000) podStartTimeoutMs!: number;
  @OptionalField() @IsMap(LABEL_MAP) nodeSelector?: Record<string, string>;
  @OptionalField() @IsMap(LABEL_MAP) extraLabels?: Record<string, string>;
  @OptionalField()
  @Matches(WIRE_PATTERN.dnsSubdomain, { message: '$property must be a PriorityClass name' })
  priorityClassName?: string;
  /** the pod template (server-wide and per cluster); an agent that predates a field ignores it */
  @OptionalField() @Nested(() => ShellPodResourcesSpec) resources?: ShellPodResourcesSpec;
  @OptionalField() @NestedList(() => ShellTolerationSpec, 32) tolerations?: ShellTolerationSpec[];
  @OptionalField() @IsMap(ANNOTATION_MAP) annotations?: Record<string, string>;
  @OptionalField()
  @IsArray({ message: '$property must be a list of at most 16 Secret names' })
  @ArrayMaxSize(16)
  @Matches(WIRE_PATTERN.dnsSubdomain, {
    each: true,
    message: 'each value in $property must be a Secret name',
  })
  imagePullSecrets?: string[];
}

export class ShellTeardownRequest {
  @Matches(WIRE_PATTERN.uuid, SESSION_ID) sessionId!: string;
  @Matches(WIRE_PATTERN.dnsLabel, NAMESPACE) namespace!: string;
}

export class ShellReapRequest {
  @Matches(WIRE_PATTERN.dnsLabel, NAMESPACE) namespace!: string;
  @IsArray()
  @ArrayMaxSize(100_000)
  @Matches(WIRE_PATTERN.uuid, EACH_SESSION_ID)
  liveSessionIds!: string[];
  @IsInt() @Min(0) @Max(86_400_000) graceMs!: number;
}

export class PodReadFileRequest {
  @Matches(WIRE_PATTERN.dnsLabel, NAMESPACE) namespace!: string;
  @Matches(WIRE_PATTERN.dnsSubdomain, POD_NAME) pod!: string;
  @Matches(WIRE_PATTERN.dnsLabel, CONTAINER) container!: string;
  @IsString()
  @MaxLength(1024)
  @Matches(/^\/[^\0]*$/, { message: '$property must be an absolute path' })
  path!: string;
  @IsInt() @Min(1) @Max(8 * 1024 * 1024) maxBytes!: number;
  /** deadline of the in-pod read, exec included (default 10 s) */
  @OptionalField() @IsInt() @Min(100) @Max(60_000) timeoutMs?: number;
}

export class ImpersonationSpec {
  @IsText(512) user!: string;
  @IsArray()
  @ArrayMaxSize(256)
  @IsString({ each: true })
  @MaxLength(512, { each: true })
  groups!: string[];
  @OptionalField()
  @IsMap({
    maxKeys: 16,
    key: (k) => k.length <= 512,
    value: (v) => Array.isArray(v) && v.length <= 256 && v.every((x) => isString(x) && x.length <= 4096),
    what: 'strings to lists of strings',
  })
  extra?: Record<string, string[]>;
}

export class PodListRequest {
  /** all namespaces the identity may list when absent */
  @OptionalField() @Matches(WIRE_PATTERN.dnsLabel, NAMESPACE) namespace?: string;
  /** one pod by name (needs namespace) */
  @OptionalField() @Matches(WIRE_PATTERN.dnsSubdomain, POD_NAME) name?: string;
  @OptionalField() @Nested(() => ImpersonationSpec) impersonate?: ImpersonationSpec;
  @IsInt() @Min(1) @Max(5000) limit!: number;
  /**
   * Namespaces whose pods are left out (Periscope's own, for operators below admin); filtered by
   * the apiserver, so they do not count against `limit`. Agents that predate it ignore it, so the
   * server filters the answer again.
   */
  @OptionalField()
  @IsArray({ message: '$property must be a list of at most 64 namespace names' })
  @ArrayMaxSize(64)
  @Matches(WIRE_PATTERN.dnsLabel, EACH_NAMESPACE)
  excludeNamespaces?: string[];
}

export class PodSummary {
  @Matches(WIRE_PATTERN.dnsLabel, NAMESPACE) namespace!: string;
  @Matches(WIRE_PATTERN.dnsSubdomain, POD_NAME) name!: string;
  @IsString() @MaxLength(64) phase!: string;
  @IsArray()
  @ArrayMaxSize(256)
  @Matches(WIRE_PATTERN.dnsLabel, EACH_CONTAINER)
  containers!: string[];
  /** kubectl.kubernetes.io/default-container, when set */
  @OptionalField() @IsString() @MaxLength(253) defaultContainer?: string;
}

// Replies.

export const CA_SOURCES = ['cluster-info', 'kubeconfig', 'service-account'] as const;

export class ClusterCaReply {
  @IsString() @Length(1, 1024 * 1024) caPem!: string;
  @IsString()
  @MaxLength(2048)
  @Matches(/^https?:\/\/\S+$/, { message: '$property must be an apiserver URL' })
  server!: string;
  @IsIn(CA_SOURCES) source!: (typeof CA_SOURCES)[number];
}

/** The answer of operations that only succeed or fail. */
export class OkReply {
  @Equals(true) ok!: true;
}

export class ShellReapReply {
  @IsArray()
  @ArrayMaxSize(100_000)
  @Matches(WIRE_PATTERN.uuid, EACH_SESSION_ID)
  removed!: string[];
}

export class PodReadFileReply {
  @IsString() @MaxLength(8 * 1024 * 1024) content!: string;
  @IsBoolean() truncated!: boolean;
}

export class PodListReply {
  @NestedList(() => PodSummary, 5000) pods!: PodSummary[];
}
