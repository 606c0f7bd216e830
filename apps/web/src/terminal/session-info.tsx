/** The "info" expander of a tab: what the session is, where it runs, and how much output arrived. */
import { SESSION_KIND } from '@periscope/protocol';

import { dateTime } from '../format';
import { terminals, type Tab } from './store';

export function SessionInfo({ tab }: { tab: Tab }): React.JSX.Element {
  const h = tab.hello;
  const shell = tab.spec.kind === SESSION_KIND.clusterShell;
  const rows: [string, string][] = [
    ['kind', shell ? 'cluster shell' : 'pod exec'],
    ...(shell ? ([['mode', h?.mode ?? tab.spec.mode ?? 'bash']] as [string, string][]) : []),
    ['cluster', tab.spec.cluster],
    ...(shell
      ? ([['scope', '(cluster-scoped)']] as [string, string][])
      : ([
          ['namespace', h?.namespace ?? tab.spec.namespace ?? ''],
          ['pod', h?.pod ?? tab.spec.pod ?? ''],
          ['container', h?.container ?? tab.spec.container ?? '(resolving…)'],
        ] as [string, string][])),
    ['session id', tab.sessionId ?? '(awaiting hello)'],
    ['opened', dateTime(new Date(tab.openedAt).toISOString())],
    ['output received', `${terminals.client(tab.id)?.receivedBytes ?? 0} bytes`],
  ];
  return (
    <dl className="info-grid" id={`info-${tab.id}`} aria-label="session details">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}
