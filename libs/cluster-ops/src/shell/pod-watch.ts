import type * as k8s from '@kubernetes/client-node';

import type { KubeAccess } from '../kube-config';
import { kubeWatch } from '../kube-http';

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
    private readonly kc: KubeAccess,
    private readonly namespace: string,
    private readonly name: string,
    /** the provision's request id, sent as `Audit-ID` on every watch */
    private readonly requestId?: string,
  ) {}

  /**
   * The pod's next state after `resourceVersion`: the newest object, `'deleted'`, or `undefined`
   * when nothing arrived within `ms` or the watch ended (read the pod again, then call again).
   */
  async next(resourceVersion: string, ms: number): Promise<k8s.V1Pod | 'deleted' | undefined> {
    const until = Date.now() + ms;
    let got = this.take();
    if (got !== undefined || this.closed) return got;
    if (!this.open) {
      const running = await this.start(resourceVersion, ms);
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
      const timer = setTimeout(done, Math.max(0, until - Date.now()));
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

  /**
   * Opens the watch; false when it could not start or ended at once. Waits for the apiserver's
   * answer at most `ms` (then the watch counts as running: its events or its end wake the caller).
   */
  private async start(resourceVersion: string, ms: number): Promise<boolean> {
    this.open = true;
    const gen = ++this.generation;
    const state = { ended: false };
    const controller = new AbortController();
    this.controller = controller;
    const end = (): void => {
      if (state.ended || gen !== this.generation) return;
      state.ended = true;
      this.open = false;
      this.wake?.();
    };
    const q = new URLSearchParams({
      watch: '1',
      fieldSelector: `metadata.name=${this.name}`,
      resourceVersion,
      timeoutSeconds: String(WATCH_SECONDS),
    });
    const opened = new Promise<boolean>((resolve) => {
      kubeWatch(
        this.kc,
        `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/pods?${q.toString()}`,
        (e) => {
          if (state.ended || gen !== this.generation) return;
          if (e.type === 'ADDED' || e.type === 'MODIFIED') {
            this.newest = e.object as k8s.V1Pod;
            this.failures = 0;
          } else if (e.type === 'DELETED') {
            this.newest = 'deleted';
          } else if (e.type === 'ERROR') {
            // e.g. 410 Gone: the version is too old; the caller reads afresh and we re-open.
            end();
            controller.abort();
            return;
          } else {
            return;
          }
          this.wake?.();
        },
        {
          // The apiserver ends the watch after WATCH_SECONDS; this bounds one that forgets to.
          deadlineMs: (WATCH_SECONDS + 15) * 1000,
          signal: controller.signal,
          what: `watching pod ${this.namespace}/${this.name}`,
          requestId: this.requestId,
          onOpen: () => {
            resolve(true);
          },
        },
      )
        .catch(() => undefined) // a watch that cannot start or breaks is re-opened after a read
        .finally(() => {
          end();
          resolve(false);
        });
    });
    let timer: NodeJS.Timeout | undefined;
    const running = await Promise.race([
      opened,
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => {
          resolve(true);
        }, ms);
      }),
    ]);
    clearTimeout(timer);
    if (!running || state.ended || gen !== this.generation) {
      controller.abort();
      return false;
    }
    return true;
  }
}
