import type { ClusterGateway, ExecChannel } from '@periscope/cluster-ops/dist/lean';
import {
  CHANNEL,
  RESET_CODE,
  hopTrace,
  type Channel,
  type MuxStream,
  type RequestRecord,
  type Ring,
  type StreamOpen,
} from '@periscope/protocol';
import type { Logger } from 'pino';

/**
 * Serves one tunnel stream with a real exec into the pod, opened through the cluster gateway like
 * the agent's other operations: stdin from the stream to the exec (credit held while the exec
 * socket is full), stdout/stderr back with the exec paused while the stream has no room, resize
 * and half-close forwarded, the exit status reported, and the exec closed when the stream is reset.
 */
export async function serveExecStream(
  gateway: Pick<ClusterGateway, 'openExec'>,
  stream: MuxStream,
  open: StreamOpen,
  log: Logger,
  diag?: { cluster: string; ring: Ring<RequestRecord> },
): Promise<void> {
  const started = performance.now();
  const fields = {
    rid: open.rid,
    sessionId: open.sessionId,
    streamId: stream.id,
    pod: `${open.namespace}/${open.pod}`,
    container: open.container,
  };
  // Kept in the diagnostics ring under the stream's request id (the apiserver's Audit-ID).
  const record: RequestRecord | undefined =
    diag && open.rid !== undefined
      ? {
          rid: open.rid,
          cluster: diag.cluster,
          op: 'exec',
          streamId: stream.id,
          startedAt: new Date().toISOString(),
          outcome: 'pending',
        }
      : undefined;
  if (record) diag?.ring.push(record);
  let exited = false;
  let session: ExecChannel | undefined;
  /** stdin bytes taken while the exec socket was full, their credit not yet returned */
  let heldStdin = 0;
  /**
   * What the server sent before the exec was open: it may send stdin (and half-close, resize) as
   * soon as it opens the stream. Kept in order and replayed once the exec is up; bounded by the
   * stream's window, since none of it is credited back before then.
   */
  const early: Array<
    | {
        kind: 'data';
        channel: Channel;
        bytes: Uint8Array;
      }
    | { kind: 'halfClose'; channel: Channel }
    | { kind: 'resize'; cols: number; rows: number }
  > = [];
  stream.handlers = {
    onData: (channel, bytes) => early.push({ kind: 'data', channel, bytes: Uint8Array.from(bytes) }),
    onHalfClose: (channel) => early.push({ kind: 'halfClose', channel }),
    onResize: (cols, rows) => early.push({ kind: 'resize', cols, rows }),
    onClose: (code, reason, byPeer) => {
      session?.close();
      if (record) {
        record.durationMs = Math.round(performance.now() - started);
        record.bytesIn = stream.bytesIn;
        record.bytesOut = stream.bytesOut;
        // The command's exit, or the server closing the stream, is a normal end.
        record.outcome = exited || (byPeer && code === RESET_CODE.closedByPeer) ? 'ok' : 'error';
        if (record.outcome === 'error') record.error = reason;
      }
      log.info(
        {
          ...fields,
          code,
          reason,
          durationMs: Math.round(performance.now() - started),
          bytesIn: stream.bytesIn,
          bytesOut: stream.bytesOut,
        },
        'exec stream closed',
      );
    },
  };
  try {
    session = await gateway.openExec(
      {
        namespace: open.namespace,
        pod: open.pod,
        container: open.container,
        command: open.command,
        tty: open.tty,
        stdin: open.stdin,
        sessionId: open.sessionId,
        ...(open.impersonate ? { impersonate: open.impersonate } : {}),
        ...(open.rid !== undefined ? { auditId: open.rid } : {}),
        ...(open.tty && open.cols !== undefined && open.rows !== undefined
          ? { cols: open.cols, rows: open.rows }
          : {}),
      },
      {
        onOutput: (channel, bytes) => {
          hopTrace?.mark('agent:exec.output', bytes.length);
          return stream.write(channel === 1 ? CHANNEL.stdout : CHANNEL.stderr, bytes);
        },
        onExit: (result) => {
          exited = true;
          stream.exit(result);
        },
        onError: (message) => {
          stream.reset(RESET_CODE.targetGone, message);
        },
        onWritable: () => {
          // The exec socket drained: the stdin held back may come now.
          const n = heldStdin;
          heldStdin = 0;
          if (n > 0 && !stream.closed) stream.consumed(CHANNEL.stdin, n);
        },
      },
    );
  } catch (err) {
    log.warn({ ...fields, err: (err as Error).message }, 'exec could not start');
    stream.reset(RESET_CODE.openFailed, (err as Error).message);
    return;
  }
  const exec = session;
  if (stream.closed) {
    exec.close();
    return;
  }
  const onData = (channel: Channel, bytes: Uint8Array): void => {
    // Stdin credit goes back while the exec socket takes more; once it is full the credit is
    // held until it drains, so the server pauses its source (as a kubelet stops reading).
    hopTrace?.mark('agent:exec.write', bytes.length);
    if (exec.write(bytes) && heldStdin === 0) stream.consumed(channel, bytes.length);
    else heldStdin += bytes.length;
    hopTrace?.mark('agent:exec.written', bytes.length);
  };
  const onResize = (cols: number, rows: number): void => {
    exec.resize(cols, rows);
  };
  const onHalfClose = (channel: Channel): void => {
    if (channel !== CHANNEL.stdin) return;
    exec.end();
    if (exec.protocol !== 'v5.channel.k8s.io')
      log.info(fields, 'apiserver speaks exec v4: stdin cannot be half-closed');
  };
  stream.handlers = {
    ...stream.handlers,
    onData,
    onWritable: () => {
      exec.resume();
    },
    onResize,
    onHalfClose,
  };
  stream.openOk({ protocol: exec.protocol });
  for (const e of early.splice(0)) {
    if (e.kind === 'data') onData(e.channel, e.bytes);
    else if (e.kind === 'halfClose') onHalfClose(e.channel);
    else onResize(e.cols, e.rows);
  }
  log.info(fields, 'exec stream open');
}
