// The protocol lib is isomorphic: it compiles without DOM or Node types. These encoders exist in
// every runtime we target (browsers, Node >= 11), so declare just what we use.
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: Uint8Array): string;
}
