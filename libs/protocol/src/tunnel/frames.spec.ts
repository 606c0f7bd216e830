import { describe, expect, it } from 'vitest';

import {
  CHANNEL,
  FRAME,
  FRAME_LIMITS,
  FrameError,
  DATA_HEADER_BYTES,
  RESET_CODE,
  decodeFrame,
  encodeDataHeader,
  encodeFrame,
  type Frame,
} from './frames';

const open = {
  sessionId: '0190f0f0-aaaa-7bbb-8ccc-000000000001',
  namespace: 'periscope-system',
  pod: 'periscope-shell-x',
  container: 'shell',
  command: ['periscope-shell'],
  tty: true,
  stdin: true,
  cols: 120,
  rows: 40,
  window: 262_144,
};

describe('tunnel frames', () => {
  const cases: Frame[] = [
    {
      type: FRAME.open,
      streamId: 2,
      open: {
        ...open,
        impersonate: {
          user: 'alice',
          groups: ['periscope-tier:admin'],
          extra: { 'audit.periscope.io/session-id': ['x'] },
        },
      },
    },
    { type: FRAME.openOk, streamId: 2, info: { protocol: 'v5.channel.k8s.io' } },
    {
      type: FRAME.data,
      streamId: 7,
      channel: CHANNEL.stdout,
      offset: 2 ** 40 + 5,
      payload: new Uint8Array([0, 1, 2, 255]),
    },
    { type: FRAME.credit, streamId: 7, channel: CHANNEL.stdin, consumed: 123_456_789, window: 262_144 },
    { type: FRAME.resize, streamId: 7, cols: 200, rows: 50 },
    { type: FRAME.halfClose, streamId: 7, channel: CHANNEL.stdin, finalOffset: 99 },
    {
      type: FRAME.exit,
      streamId: 7,
      exit: { exitCode: 3, status: 'Failure', message: 'command terminated with non-zero exit code' },
    },
    { type: FRAME.reset, streamId: 7, code: RESET_CODE.slowConsumer, reason: 'no credit for 60 s — ✗' },
  ];

  it.each(cases.map((c) => [c.type, c] as const))('round-trips frame type %i', (_t, frame) => {
    expect(decodeFrame(encodeFrame(frame))).toEqual(frame);
  });

  it('decodes from a view into a larger buffer (as Socket.IO hands them over)', () => {
    const encoded = encodeFrame(cases[2]!);
    const big = new Uint8Array(encoded.length + 10);
    big.set(encoded, 7);
    expect(decodeFrame(big.subarray(7, 7 + encoded.length))).toEqual(cases[2]);
  });

  it.each([
    ['too short', new Uint8Array([3, 0, 0])],
    ['unknown type', new Uint8Array([99, 0, 0, 0, 1])],
    [
      'unknown channel',
      encodeFrame({ type: FRAME.credit, streamId: 1, channel: 0, consumed: 1, window: 1 }).map((b, i) =>
        i === 5 ? 9 : b,
      ),
    ],
    [
      'truncated credit',
      encodeFrame({ type: FRAME.credit, streamId: 1, channel: 0, consumed: 1, window: 1 }).subarray(0, 10),
    ],
    ['oversized frame', new Uint8Array(FRAME_LIMITS.maxFrame + 1).fill(3, 0, 1)],
    [
      'huge resize',
      (() => {
        const f = encodeFrame({ type: FRAME.resize, streamId: 1, cols: 80, rows: 24 });
        f[5] = 0xff;
        return f;
      })(),
    ],
    ['open with bad JSON', new Uint8Array([1, 0, 0, 0, 1, 123])],
    [
      'open without command',
      new TextEncoder().encode('\u0001\u0000\u0000\u0000\u0001' + JSON.stringify({ ...open, command: [] })),
    ],
    [
      'open with a tiny window',
      new TextEncoder().encode('\u0001\u0000\u0000\u0000\u0001' + JSON.stringify({ ...open, window: 1 })),
    ],
    [
      'offset beyond 2^53',
      (() => {
        const f = encodeFrame({ type: FRAME.halfClose, streamId: 1, channel: 0, finalOffset: 0 });
        f[6] = 0xff;
        return f;
      })(),
    ],
  ])('rejects %s', (_name, bytes) => {
    expect(() => decodeFrame(bytes)).toThrow(FrameError);
  });

  it('refuses to encode a data payload above the limit', () => {
    expect(() =>
      encodeFrame({
        type: FRAME.data,
        streamId: 1,
        channel: 1,
        offset: 0,
        payload: new Uint8Array(FRAME_LIMITS.maxData + 1),
      }),
    ).toThrow(FrameError);
  });

  describe('DATA as header + payload', () => {
    const data = {
      type: FRAME.data,
      streamId: 7,
      channel: CHANNEL.stderr,
      offset: 2 ** 40 + 3,
      payload: new Uint8Array([1, 2, 3, 250]),
    } as const;

    it('is the whole frame cut after the offset, and decodes to the same frame without copying', () => {
      const head = encodeDataHeader(data);
      expect(head.length).toBe(DATA_HEADER_BYTES);
      expect([...head]).toEqual([...encodeFrame(data).subarray(0, DATA_HEADER_BYTES)]);
      const payload = new Uint8Array([9, 9, 1, 2, 3, 250]).subarray(2);
      const back = decodeFrame(head, payload);
      expect(back).toEqual(data);
      expect((back as { payload: Uint8Array }).payload).toBe(payload);
    });

    it.each<[string, Uint8Array, Uint8Array]>([
      [
        'a non-DATA header',
        encodeFrame({ type: FRAME.resize, streamId: 1, cols: 80, rows: 24 }),
        new Uint8Array(1),
      ],
      ['a whole DATA frame as the header', encodeFrame(data), new Uint8Array(1)],
      ['a short header', encodeDataHeader(data).subarray(0, DATA_HEADER_BYTES - 1), new Uint8Array(1)],
      ['an oversized payload', encodeDataHeader(data), new Uint8Array(FRAME_LIMITS.maxData + 1)],
      [
        'an unknown channel',
        (() => {
          const h = encodeDataHeader(data);
          h[5] = 9;
          return h;
        })(),
        new Uint8Array(1),
      ],
    ])('rejects %s', (_name, head, payload) => {
      expect(() => decodeFrame(head, payload)).toThrow(FrameError);
    });
  });
});
