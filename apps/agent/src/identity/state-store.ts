import type * as k8s from '@kubernetes/client-node';
import { apiStatus, kubeJson, type KubeAccess } from '@periscope/cluster-ops/dist/lean';

/** What the agent keeps between restarts: its key, certificate, the server CA and tunnel URL. */
export interface AgentState {
  keyPem: string;
  certPem: string;
  caPem: string;
  tunnelUrl: string;
}

export interface AgentStateStore {
  load(): Promise<AgentState | undefined>;
  /** Creates the state; if one appeared meanwhile, returns that one instead (never overwrites). */
  create(state: AgentState): Promise<AgentState>;
  /** Replaces the certificate and key after a renewal. */
  update(state: AgentState): Promise<void>;
}

const KEYS = { keyPem: 'tls.key', certPem: 'tls.crt', caPem: 'ca.crt', tunnelUrl: 'tunnel-url' } as const;

/** The Secret calls the store makes (a narrow seam: specs give it an in-memory Secret). */
export type SecretApi = Pick<
  k8s.CoreV1Api,
  'readNamespacedSecret' | 'createNamespacedSecret' | 'replaceNamespacedSecret'
>;

/** Deadline of each call of the store (the agent retries its start when one fails). */
const SECRET_CALL_TIMEOUT_MS = 30_000;

/**
 * The store's Secret calls as raw apiserver calls (kube-http.ts): the agent does not load
 * @kubernetes/client-node for them. Failures carry the HTTP status (`apiStatus`).
 */
export function rawSecretApi(kc: KubeAccess): SecretApi {
  const path = (namespace: string, name?: string): string =>
    `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets${name !== undefined ? `/${encodeURIComponent(name)}` : ''}`;
  return {
    readNamespacedSecret: ({ name, namespace }) =>
      kubeJson<k8s.V1Secret>(kc, {
        method: 'GET',
        path: path(namespace, name),
        what: `reading Secret ${namespace}/${name}`,
        timeoutMs: SECRET_CALL_TIMEOUT_MS,
      }),
    createNamespacedSecret: ({ namespace, body }) =>
      kubeJson<k8s.V1Secret>(kc, {
        method: 'POST',
        path: path(namespace),
        body,
        what: `creating Secret ${namespace}/${body.metadata?.name ?? ''}`,
        timeoutMs: SECRET_CALL_TIMEOUT_MS,
      }),
    replaceNamespacedSecret: ({ name, namespace, body }) =>
      kubeJson<k8s.V1Secret>(kc, {
        method: 'PUT',
        path: path(namespace, name),
        body,
        what: `replacing Secret ${namespace}/${name}`,
        timeoutMs: SECRET_CALL_TIMEOUT_MS,
      }),
  };
}

/** Agent state in a Kubernetes Secret of its own namespace. */
export class SecretStateStore implements AgentStateStore {
  constructor(
    private readonly api: SecretApi,
    private readonly namespace: string,
    private readonly name: string,
  ) {}

  private static decode(secret: k8s.V1Secret): AgentState | undefined {
    const d = secret.data ?? {};
    const get = (k: string): string | undefined =>
      d[k] !== undefined ? Buffer.from(d[k], 'base64').toString('utf8') : undefined;
    const s = {
      keyPem: get(KEYS.keyPem),
      certPem: get(KEYS.certPem),
      caPem: get(KEYS.caPem),
      tunnelUrl: get(KEYS.tunnelUrl),
    };
    return s.keyPem && s.certPem && s.caPem && s.tunnelUrl ? (s as AgentState) : undefined;
  }

  private body(state: AgentState): k8s.V1Secret {
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name: this.name,
        namespace: this.namespace,
        labels: { 'app.kubernetes.io/name': 'periscope-agent', 'app.kubernetes.io/component': 'state' },
      },
      type: 'Opaque',
      stringData: {
        [KEYS.keyPem]: state.keyPem,
        [KEYS.certPem]: state.certPem,
        [KEYS.caPem]: state.caPem,
        [KEYS.tunnelUrl]: state.tunnelUrl,
      },
    };
  }

  async load(): Promise<AgentState | undefined> {
    try {
      return SecretStateStore.decode(
        await this.api.readNamespacedSecret({ name: this.name, namespace: this.namespace }),
      );
    } catch (err) {
      if (apiStatus(err) === 404) return undefined;
      throw err;
    }
  }

  async create(state: AgentState): Promise<AgentState> {
    try {
      await this.api.createNamespacedSecret({ namespace: this.namespace, body: this.body(state) });
      return state;
    } catch (err) {
      if (apiStatus(err) !== 409) throw err;
      const existing = await this.load();
      if (!existing)
        throw new Error(
          `Secret ${this.namespace}/${this.name} exists but holds no complete agent state; delete it or fix it`,
        );
      return existing;
    }
  }

  async update(state: AgentState): Promise<void> {
    await this.api.replaceNamespacedSecret({
      name: this.name,
      namespace: this.namespace,
      body: this.body(state),
    });
  }
}
