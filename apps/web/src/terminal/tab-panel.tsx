/**
 * The body of one tab: session details (when asked), a banner, the refusal, provisioning progress,
 * and the lazily loaded xterm (its module and xterm.js are a chunk of their own).
 */
import { SESSION_KIND } from '@periscope/protocol';
import { lazy, Suspense } from 'react';

import { Refusal } from './refusal';
import { SessionBanner } from './session-banner';
import { SessionInfo } from './session-info';
import type { Tab } from './store';

const TerminalView = lazy(() => import('./terminal-view'));

export function TabPanel({
  tab,
  active,
  info,
  now,
}: {
  tab: Tab;
  active: boolean;
  info: boolean;
  now: number;
}): React.JSX.Element {
  const s = tab.state;
  const kind = tab.spec.kind;
  const hasTerminal = tab.stage === 'session';
  return (
    <div
      className="tab-panel"
      role="tabpanel"
      id={`panel-${tab.id}`}
      aria-labelledby={`tab-${tab.id}`}
      hidden={!active}
    >
      {info && <SessionInfo tab={tab} />}
      <SessionBanner tab={tab} now={now} />
      {tab.watchers !== undefined && tab.watchers.length > 0 && (
        <div className="banner watch" role="status" data-testid="watch-banner">
          <span>
            <strong>{tab.watchers.join(', ')}</strong> {tab.watchers.length === 1 ? 'is' : 'are'} watching
            this session live (read-only: they see what you see and cannot type)
          </span>
        </div>
      )}
      {tab.stage === 'refused' && tab.refusal && <Refusal tab={tab} />}
      {tab.stage === 'requesting' && (
        <p className="panel-note">
          asking the server for a {kind === SESSION_KIND.clusterShell ? 'cluster shell' : 'pod exec'} session…
        </p>
      )}
      {hasTerminal &&
        (s.phase === 'connecting' || s.phase === 'open') &&
        tab.outputSeen !== true &&
        (tab.progress?.length ?? 0) > 0 && <ProvisioningProgress progress={tab.progress ?? []} />}
      {hasTerminal && (
        <Suspense fallback={<p className="panel-note">loading terminal…</p>}>
          <TerminalView tabId={tab.id} active={active} />
        </Suspense>
      )}
    </div>
  );
}

function ProvisioningProgress({ progress }: { progress: NonNullable<Tab['progress']> }): React.JSX.Element {
  return (
    <ol className="progress" aria-label="provisioning progress">
      {progress.map((p, i) => (
        <li key={i}>
          <span className="muted small">{p.phase}</span> {p.message}
        </li>
      ))}
    </ol>
  );
}
