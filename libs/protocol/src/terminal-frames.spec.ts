import { describe, expect, it } from 'vitest';

import { parseClientFrame } from './terminal-frames';

describe(parseClientFrame.name, () => {
  it('accepts the frames of the contract', () => {
    expect(parseClientFrame('{"type":"resize","cols":120,"rows":40}')).toEqual({
      type: 'resize',
      cols: 120,
      rows: 40,
    });
    expect(parseClientFrame('{"type":"close"}')).toEqual({ type: 'close' });
    expect(parseClientFrame('{"type":"keepalive"}')).toEqual({ type: 'keepalive' });
  });

  it.each([
    ['not json', '{'],
    ['unknown type', '{"type":"exec","cmd":"rm"}'],
    ['huge resize', '{"type":"resize","cols":100000,"rows":40}'],
    ['fractional size', '{"type":"resize","cols":80.5,"rows":24}'],
    ['string size', '{"type":"resize","cols":"80","rows":24}'],
    ['null', 'null'],
  ])('refuses %s', (_name, text) => {
    expect(parseClientFrame(text)).toBeUndefined();
  });
});
