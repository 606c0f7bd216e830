/**
 * What a terminal session hands to its observers (the recorder, live watchers; see
 * apps/server/src/recording): every output byte as sent to the browser, stdin, and size changes.
 * `ready` false asks the session to pause the exec (as a slow browser does) until it is true again.
 */
export interface SessionTap {
  output(bytes: Uint8Array): void;
  input(bytes: Uint8Array): void;
  resize(cols: number, rows: number): void;
  readonly ready: boolean;
  /** the session ended; answers fields for its close record */
  close(): Promise<Record<string, unknown>>;
}
