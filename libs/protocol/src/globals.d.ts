// The protocol lib is isomorphic: it compiles without DOM or Node types. These encoders exist in
// every runtime we target (browsers, Node >= 11), so declare just what we use.
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: Uint8Array): string;
}
declare function setTimeout(callback: () => void, ms?: number): number;
declare function clearTimeout(handle: number | undefined): void;
declare function setInterval(callback: () => void, ms?: number): number;
declare function clearInterval(handle: number | undefined): void;
declare function queueMicrotask(callback: () => void): void;
declare const crypto: { getRandomValues<T extends Uint8Array>(array: T): T };
