import * as k8s from '@kubernetes/client-node';

/** How long a watch may stay open before the apiserver ends it; we re-open from the last version. */
const WATCH_SECONDS = 60;

/**
 * One pod's changes as they happen, over a single watch connection that is re-opened when it
 * ends. Only the newest unseen state is kept (a one-slot mailbox), so memory does not grow
 * however many events arrive between two reads.
 */
export class PodWatch {
  private controller: AbortController | undefined;
  private open = false;
  private newest: k8s.V1Pod | 'deleted' | undefined;
  private wake: (() => void) | undefined;
  private failures = 0;
  private closed = false;
  /** bumps on every start; events of an older watch (still closing) are ignored */
  private generation = 0;

  constructor(
    private readonly kc: k8s.KubeConfig,
    private readonly namespace: string,
    private readonly name: string,
  ) {}

  /**
   * The pod's next state after `resourceVersion`: the newest object, `'deleted'`, or `undefined`
   * when nothing arrived within `ms` or the watch ended (read the pod again, then call again).
   */
  async next(resourceVersion: string, ms: number): Promise<k8s.V1Pod | 'deleted' | undefined> {
    let got = this.take();
    if (got !== undefined || this.closed) return got;
    if (!this.open) {
      const running = await this.start(resourceVersion);
      got = this.take();
      if (got !== undefined) return got;
      if (!running) {
        // The watch could not start or ended at once (e.g. 410 Gone, no watch permission): back
        // off a little so the caller's re-read does not spin.
        this.failures++;
        await new Promise((r) => setTimeout(r, Math.min(ms, 100 * Math.min(this.failures, 5))));
        return undefined;
      }
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
    this.wake = undefined;
    return this.take();
  }

  private take(): k8s.V1Pod | 'deleted' | undefined {
    const got = this.newest;
    this.newest = undefined;
    return got;
  }

  close(): void {
    this.closed = true;
    this.generation++;
    this.controller?.abort();
    this.controller = undefined;
    this.open = false;
    this.wake?.();
  }

  /** Opens the watch; false when it could not start or ended at once. */
  private async start(resourceVersion: string): Promise<boolean> {
    this.open = true;
    const gen = ++this.generation;
    const state = { ended: false };
    const end = (): void => {
      if (state.ended || gen !== this.generation) return;
      state.ended = true;
      this.open = false;
      this.wake?.();
    };
    const controller = await new k8s.Watch(this.kc).watch(
      `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/pods`,
      {
        fieldSelector: `metadata.name=${this.name}`,
        resourceVersion,
        timeoutSeconds: WATCH_SECONDS,
      },
      (type: string, obj: unknown) => {
        if (state.ended || gen !== this.generation) return;
        if (type === 'ADDED' || type === 'MODIFIED') {
          this.newest = obj as k8s.V1Pod;
          this.failures = 0;
        } else if (type === 'DELETED') {
          this.newest = 'deleted';
        } else if (type === 'ERROR') {
          // e.g. 410 Gone: the version is too old; the caller reads afresh and we re-open.
          end();
          this.controller?.abort();
          this.controller = undefined;
          return;
        } else {
          return;
        }
        this.wake?.();
      },
      () => {
        end();
      },
    );
    if (state.ended || gen !== this.generation) {
      controller.abort();
      return false;
    }
    this.controller = controller;
    return true;
  }
}
