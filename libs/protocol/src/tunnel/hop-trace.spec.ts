import { describe, expect, it } from 'vitest';

import { HOP_TRACE_SMALL_BYTES, HopTrace, hopTrace, traceRawSocket } from './hop-trace';

describe('HopTrace', () => {
  it('is off unless PERISCOPE_TRACE_KEYSTROKE=1, and then costs nothing at the call sites', () => {
    expect(process.env['PERISCOPE_TRACE_KEYSTROKE']).toBeUndefined();
    expect(hopTrace).toBeUndefined();
    expect((globalThis as Record<symbol, unknown>)[Symbol.for('periscope.hopTrace')]).toBeUndefined();
    // the socket hook leaves the socket alone when tracing is off
    const socket = { prependListener: () => undefined, write: () => true };
    const write = socket.write;
    traceRawSocket('x', socket);
    expect(socket.write).toBe(write);
  });

  it('keeps the last marks of small frames in a bounded ring, oldest first, and empties on take', () => {
    let now = 0;
    const trace = new HopTrace(4, () => now);
    for (let i = 1; i <= 6; i++) {
      now = i * 1000;
      trace.mark(`hop${i}`, 1);
    }
    now = 7000;
    trace.mark('bulk', HOP_TRACE_SMALL_BYTES + 1);
    expect(trace.take()).toEqual([
      { t: 3000, hop: 'hop3', bytes: 1 },
      { t: 4000, hop: 'hop4', bytes: 1 },
      { t: 5000, hop: 'hop5', bytes: 1 },
      { t: 6000, hop: 'hop6', bytes: 1 },
    ]);
    expect(trace.take()).toEqual([]);
    trace.mark('again', 2);
    expect(trace.take()).toEqual([{ t: 7000, hop: 'again', bytes: 2 }]);
  });
});
