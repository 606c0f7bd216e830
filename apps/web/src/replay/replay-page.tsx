/**
 * Replay of a recorded terminal session (GET /api/sessions/{id}/recording, asciicast v2) in an
 * xterm: play/pause, speed, seek, the session's kubectl/helm commands as a timeline (click to
 * jump), search in the output, and the .cast download. The server checks the recording against
 * its close record (before sending a small one, while streaming a large one, cutting the transfer
 * on a mismatch), and the page checks the bytes it received against the SHA-256 the server names;
 * a mismatch or a cut transfer is shown as an integrity failure.
 */
import '@xterm/xterm/css/xterm.css';

import type { Terminal } from '@xterm/xterm';
import { useEffect, useRef, useState, type SyntheticEvent } from 'react';

import { api } from '../api';
import { openXterm, bufferText } from '../terminal/xterm-setup';
import type { AuditPage } from '../types';
import { clock, parseCast, searchOutput, sizeOf, timelineOf, type Cast, type TimelineEntry } from './cast';

interface LoadError {
  status: number;
  code: string;
  message: string;
}

const SPEEDS = [0.5, 1, 2, 4, 8, 16];
const TICK_MS = 50;

declare global {
  interface Window {
    __periscopeReplay?: { text: () => string; time: () => number };
  }
}

async function loadRecording(sessionId: string): Promise<Cast> {
  const res = await fetch(`/api/sessions/${encodeURIComponent(sessionId)}/recording`, {
    credentials: 'same-origin',
  });
  if (!res.ok) {
    let code = 'E_HTTP';
    let message = `HTTP ${res.status}`;
    try {
      const b = (await res.json()) as { error?: string; message?: string };
      code = b.error ?? code;
      message = b.message ?? message;
    } catch {
      // not JSON
    }
    throw Object.assign(new Error(message), { status: res.status, code });
  }
  const integrity = (message: string): Error =>
    Object.assign(new Error(message), { status: res.status, code: 'E_RECORDING_INTEGRITY' });
  let bytes: ArrayBuffer;
  try {
    bytes = await res.arrayBuffer();
  } catch {
    // A large recording is checked while it streams: on a mismatch the server cuts the transfer.
    throw integrity(
      'the transfer was cut before its end: the server stops sending a recording whose SHA-256 does not match its close record (the audit log then has a session_replay error with integrity failed), or the connection failed; reload to retry',
    );
  }
  const expected = res.headers.get('X-Periscope-Recording-Sha256');
  // (crypto.subtle exists in secure contexts only: https, or localhost)
  if (expected !== null && window.isSecureContext) {
    const got = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))]
      .map((b) => b.toString(16).padStart(2, '0'))
      .join('');
    if (got !== expected)
      throw integrity(
        `the bytes received have SHA-256 ${got.slice(0, 12)}…, the close record ${expected.slice(0, 12)}…`,
      );
  }
  return parseCast(new TextDecoder().decode(bytes));
}

export function ReplayPage({ sessionId }: { sessionId: string }): React.JSX.Element {
  const [cast, setCast] = useState<Cast>();
  const [error, setError] = useState<LoadError>();
  const [timeline, setTimeline] = useState<TimelineEntry[]>([]);

  useEffect(() => {
    let live = true;
    loadRecording(sessionId).then(
      (c) => {
        if (live) setCast(c);
      },
      (err: unknown) => {
        const e = err as Error & { status?: number; code?: string };
        if (live) setError({ status: e.status ?? 0, code: e.code ?? 'E_NETWORK', message: e.message });
      },
    );
    api<AuditPage>('GET', `/api/audit?session_id=${encodeURIComponent(sessionId)}&limit=50`).then(
      (p) => {
        if (live) setTimeline(timelineOf(p.events));
      },
      () => undefined,
    );
    return () => {
      live = false;
    };
  }, [sessionId]);

  return (
    <div className="page">
      <div className="page-head">
        <h1>
          Replay <code>{sessionId.slice(0, 8)}</code>
        </h1>
        <a className="btn small" href={`/api/sessions/${sessionId}/recording?download=1`} download>
          download .cast
        </a>
      </div>
      {error && error.code === 'E_RECORDING_INTEGRITY' && (
        <div className="banner bad" role="alert" data-testid="replay-integrity">
          <span>
            <strong>Integrity check failed</strong> — the recording does not match the size and SHA-256 in its
            close record: it was modified or damaged after the session ended. {error.message}
          </span>
        </div>
      )}
      {error && error.code !== 'E_RECORDING_INTEGRITY' && (
        <div className="banner bad" role="alert" data-testid="replay-error">
          <span>
            <code>{error.code}</code> {error.message}
          </span>
        </div>
      )}
      {!cast && !error && <p className="muted">loading the recording…</p>}
      {cast && <Player cast={cast} timeline={timeline} />}
    </div>
  );
}

function Player({ cast, timeline }: { cast: Cast; timeline: TimelineEntry[] }): React.JSX.Element {
  const host = useRef<HTMLDivElement>(null);
  const term = useRef<Terminal>(undefined);
  const next = useRef(0);
  const at = useRef(0);
  const [time, setTime] = useState(0);
  const [playing, setPlaying] = useState(false);
  const [speed, setSpeed] = useState(1);
  const [query, setQuery] = useState('');
  const [found, setFound] = useState<number[] | undefined>();

  const renderTo = (t: number): void => {
    const x = term.current;
    if (!x) return;
    if (t < at.current) {
      x.reset();
      x.resize(cast.width, cast.height);
      next.current = 0;
    }
    let buf = '';
    const ev = cast.events;
    while (next.current < ev.length && (ev[next.current]?.t ?? Infinity) <= t) {
      const e = ev[next.current];
      next.current++;
      if (!e) break;
      if (e.code === 'o') buf += e.data;
      else if (e.code === 'r') {
        const size = sizeOf(e.data);
        if (size) {
          if (buf !== '') x.write(buf);
          buf = '';
          x.resize(size.cols, size.rows);
        }
      }
    }
    if (buf !== '') x.write(buf);
    at.current = t;
    setTime(t);
  };

  useEffect(() => {
    if (!host.current) return;
    const x = openXterm(host.current);
    x.term.options.cursorBlink = false;
    x.term.options.disableStdin = true;
    x.term.resize(cast.width, cast.height);
    term.current = x.term;
    next.current = 0;
    at.current = 0;
    renderTo(0);
    window.__periscopeReplay = { text: () => bufferText(x.term), time: () => at.current };
    return () => {
      window.__periscopeReplay = undefined;
      term.current = undefined;
      x.term.dispose();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [cast]);

  useEffect(() => {
    if (!playing) return;
    const timer = setInterval(() => {
      const t = at.current + (TICK_MS / 1000) * speed;
      if (t >= cast.duration) {
        renderTo(cast.duration);
        setPlaying(false);
      } else renderTo(t);
    }, TICK_MS);
    return () => {
      clearInterval(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [playing, speed, cast]);

  const search = (e: SyntheticEvent): void => {
    e.preventDefault();
    const hits = searchOutput(cast, query);
    setFound(hits);
    if (hits[0] !== undefined) renderTo(hits[0]);
  };

  return (
    <div className="replay">
      <div className="toolbar replay-controls" role="toolbar" aria-label="replay controls">
        <button
          type="button"
          className="btn small primary"
          onClick={() => {
            if (!playing && at.current >= cast.duration) renderTo(0);
            setPlaying(!playing);
          }}
        >
          {playing ? 'pause' : 'play'}
        </button>
        <label className="small">
          speed{' '}
          <select
            aria-label="speed"
            value={speed}
            onChange={(e) => {
              setSpeed(Number(e.target.value));
            }}
          >
            {SPEEDS.map((s) => (
              <option key={s} value={s}>
                {s}×
              </option>
            ))}
          </select>
        </label>
        <input
          type="range"
          aria-label="seek"
          min={0}
          max={cast.duration}
          step={0.1}
          value={time}
          onChange={(e) => {
            renderTo(Number(e.target.value));
          }}
        />
        <span className="small nowrap" data-testid="replay-clock">
          {clock(time)} / {clock(cast.duration)}
        </span>
        {cast.truncated && (
          <span className="badge warn" title="the recording reached its size cap">
            truncated
          </span>
        )}
      </div>
      <div className="replay-body">
        <div className="replay-screen term-host" ref={host} data-testid="replay-screen" />
        <aside className="replay-side">
          <h2 className="small">kubectl and helm commands</h2>
          {timeline.length === 0 ? (
            <p className="muted small">none recorded</p>
          ) : (
            <ol className="replay-timeline" aria-label="command timeline">
              {timeline.map((c, i) => (
                <li key={i}>
                  <button
                    type="button"
                    className="link-button"
                    title={`jump to ${clock(c.at)}`}
                    onClick={() => {
                      renderTo(c.at);
                    }}
                  >
                    <span className="muted">{clock(c.at)}</span> <code>{c.command}</code>
                  </button>
                </li>
              ))}
            </ol>
          )}
          <form onSubmit={search} role="search">
            <input
              aria-label="search in the output"
              value={query}
              placeholder="search the output"
              onChange={(e) => {
                setQuery(e.target.value);
              }}
            />{' '}
            <button type="submit" className="btn small">
              search
            </button>
          </form>
          {found && (
            <div data-testid="replay-matches">
              <p className="small">
                {found.length === 0
                  ? 'no match'
                  : `${found.length} ${found.length === 1 ? 'match' : 'matches'}`}
              </p>
              <ol className="replay-timeline" aria-label="search matches">
                {found.slice(0, 50).map((t, i) => (
                  <li key={i}>
                    <button
                      type="button"
                      className="link-button"
                      onClick={() => {
                        renderTo(t);
                      }}
                    >
                      match at {clock(t)}
                    </button>
                  </li>
                ))}
              </ol>
            </div>
          )}
        </aside>
      </div>
    </div>
  );
}
