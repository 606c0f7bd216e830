/**
 * Reads a streamed response body to its end, counting the bytes: `cut` is the error that ended
 * the transfer early (undefined when the body completed). For replays whose integrity check cuts
 * the connection instead of sending the last chunk.
 */
export async function readUntilCut(res: Response): Promise<{ bytes: number; cut: unknown }> {
  let bytes = 0;
  let cut: unknown;
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) bytes += chunk.length;
  } catch (err) {
    cut = err;
  }
  return { bytes, cut };
}
