import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';

import { REPLICA_SHOWN_MAX, replicaOf } from './replica';
import { ReplicaNote } from './replica-note';

describe('replicaOf', () => {
  it('names the replica the server sent', () => {
    expect(replicaOf({ replica: 'periscope-server-7c9f-2' })).toBe('periscope-server-7c9f-2');
    expect(replicaOf({ replica: '  fwd-b ' })).toBe('fwd-b');
  });

  it('names none when the row carries none (one replica, a disconnected agent, an older server)', () => {
    expect(replicaOf({})).toBeUndefined();
    expect(replicaOf({ replica: null })).toBeUndefined();
    expect(replicaOf({ replica: '' })).toBeUndefined();
    expect(replicaOf({ replica: '   ' })).toBeUndefined();
    expect(replicaOf({ replica: 7 as unknown as string })).toBeUndefined();
  });

  it('cuts an over-long id to the shown maximum', () => {
    const shown = replicaOf({ replica: 'r'.repeat(500) });
    expect(shown).toHaveLength(REPLICA_SHOWN_MAX);
    expect(shown?.endsWith('…')).toBe(true);
    expect(replicaOf({ replica: 'r'.repeat(REPLICA_SHOWN_MAX) })).toBe('r'.repeat(REPLICA_SHOWN_MAX));
  });
});

describe('ReplicaNote', () => {
  const render = (row: { replica?: string | null }): string =>
    renderToStaticMarkup(createElement(ReplicaNote, { row, testId: 'agent-replica-lab' }));

  it('renders the replica under the cell when the row names one', () => {
    const html = render({ replica: 'fwd-b' });
    expect(html).toBe(
      '<div class="muted small" data-testid="agent-replica-lab" title="held by the server replica fwd-b">replica <code>fwd-b</code></div>',
    );
  });

  it('renders nothing when it names none, so one replica looks as before', () => {
    expect(render({})).toBe('');
    expect(render({ replica: null })).toBe('');
  });

  it('escapes what it shows', () => {
    expect(render({ replica: '<b>x</b>' })).toContain('replica <code>&lt;b&gt;x&lt;/b&gt;</code>');
  });
});
