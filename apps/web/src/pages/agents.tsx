import { useState, type SyntheticEvent } from 'react';

import { del, errorText, get, post } from '../api';
import { dateTime, since } from '../format';
import type { Agent, Cluster, WhoAmI } from '../types';
import { useApi } from '../use-api';
import { formField } from './form';
import { ReplicaNote } from './replica-note';

interface Minted {
  token: string;
  expiresAt: string;
  cluster: string;
}

/** The commands an operator runs in the managed cluster (charts/periscope-agent values). */
export function onboardingCommands(
  m: Minted,
  tunnelUrl: string,
  registrationUrl: string,
  shell: boolean,
): string {
  const lines = [
    `kubectl create namespace periscope-system`,
    `kubectl -n periscope-system create secret generic periscope-agent-registration \\`,
    `  --from-literal=token=${m.token}`,
    `helm install periscope-agent ./charts/periscope-agent \\`,
    `  -n periscope-system --create-namespace \\`,
    `  --set agent.serverURL=${tunnelUrl} \\`,
    `  --set agent.registrationURL=${registrationUrl} \\`,
    `  --set agent.clusterName=${m.cluster} \\`,
    `  --set agent.registrationToken.existingSecret=periscope-agent-registration${shell ? ' \\' : ''}`,
  ];
  if (shell) lines.push(`  --set clusterShell.enabled=true --set clusterRBAC.enabled=true`);
  return lines.join('\n');
}

/**
 * Revokes a cluster's agent after a confirmation: its certificate is refused from then on and its
 * tunnel drops (open sessions on that cluster end); it comes back only by registering again.
 */
function RevokeButton({
  agent,
  onDone,
}: {
  agent: Agent;
  onDone: (message: string) => void;
}): React.JSX.Element {
  const [busy, setBusy] = useState(false);
  const revoke = async (): Promise<void> => {
    if (
      !window.confirm(
        `Revoke the agent of ${agent.cluster}?\n\nIts certificate stops working at once: the tunnel drops and open sessions on ${agent.cluster} end. The cluster comes back only when its agent registers again with a new token (delete its state Secret first).`,
      )
    )
      return;
    setBusy(true);
    try {
      const r = (await del(`/api/agents/${encodeURIComponent(agent.cluster)}`)) as {
        droppedConnection?: boolean;
      };
      onDone(
        `Revoked the agent of ${agent.cluster}${r.droppedConnection === true ? '; its tunnel was dropped' : ''}. Mint a new token below to register it again.`,
      );
    } catch (err) {
      onDone(`Revoking ${agent.cluster} failed: ${errorText(err)}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <button
      type="button"
      className="btn small danger"
      aria-label={`revoke the agent of ${agent.cluster}`}
      disabled={busy || agent.revoked}
      onClick={() => void revoke()}
    >
      {busy ? 'revoking…' : 'revoke'}
    </button>
  );
}

export function AgentsPage({ me }: { me: WhoAmI }): React.JSX.Element {
  const agents = useApi<{ agents: Agent[] }>(me.tier === 'admin' ? '/api/agents' : undefined, 15_000);
  const clusters = useApi<{ clusters: Cluster[] }>('/api/clusters');
  const [notice, setNotice] = useState<string | undefined>();
  if (me.tier !== 'admin') {
    return (
      <div className="page">
        <h1>Agents</h1>
        <p role="alert">The agents page is for the admin tier.</p>
      </div>
    );
  }
  const agentClusters = (clusters.data?.clusters ?? [])
    .filter((c) => c.backend === 'agent')
    .map((c) => c.name);
  return (
    <div className="page">
      <div className="page-head">
        <h1>Agents</h1>
        <button type="button" className="btn small" onClick={agents.reload} disabled={agents.loading}>
          {agents.loading ? 'refreshing…' : 'refresh'}
        </button>
      </div>
      {agents.error && (
        <p role="alert" className="error-text">
          {agents.error.message}
        </p>
      )}
      {notice && (
        <p role="status" data-testid="agents-notice">
          {notice}
        </p>
      )}
      <table className="table" aria-label="agents">
        <thead>
          <tr>
            <th scope="col">cluster</th>
            <th scope="col">tunnel</th>
            <th scope="col">connected since</th>
            <th scope="col">last seen</th>
            <th scope="col">rtt</th>
            <th scope="col">open streams</th>
            <th scope="col">certificate valid until</th>
            <th scope="col">version</th>
            <th scope="col">cluster shell</th>
            <th scope="col">
              <span className="visually-hidden">actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {(agents.data?.agents ?? []).map((a) => (
            <tr key={a.cluster}>
              <td className="strong">{a.cluster}</td>
              <td>
                {a.revoked ? (
                  <span className="badge bad" title={`revoked ${a.revokedAt ?? ''} by ${a.revokedBy ?? '?'}`}>
                    revoked
                  </span>
                ) : a.connected ? (
                  <>
                    <span className="badge ok">connected</span>
                    <ReplicaNote row={a} testId={`agent-replica-${a.cluster}`} />
                  </>
                ) : a.handshakeProblem ? (
                  <span
                    className="badge bad"
                    title={`${a.handshakeProblem.at}: ${a.handshakeProblem.reason}`}
                  >
                    unavailable: {a.handshakeProblem.reason}
                  </span>
                ) : (
                  <span className="badge bad">disconnected</span>
                )}
              </td>
              <td>{a.connectedSince ? `${dateTime(a.connectedSince)} (${since(a.connectedSince)})` : '—'}</td>
              <td>{since(a.lastSeen)}</td>
              <td>{a.lastRttMs === null ? '—' : `${a.lastRttMs} ms`}</td>
              <td>{a.openStreams}</td>
              <td>{dateTime(a.certificateNotAfter)}</td>
              <td>{a.version ?? '—'}</td>
              <td>
                {a.clusterShell === null
                  ? '—'
                  : a.clusterShell.enabled
                    ? `on · ${a.clusterShell.namespace} · ${a.clusterShell.tiers.join(', ')}`
                    : 'off'}
              </td>
              <td>
                <RevokeButton
                  agent={a}
                  onDone={(m) => {
                    setNotice(m);
                    agents.reload();
                  }}
                />
              </td>
            </tr>
          ))}
          {agents.data && agents.data.agents.length === 0 && (
            <tr>
              <td colSpan={10} className="muted">
                No cluster with backend: agent is registered in the clusters file.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <div className="two-col">
        <Onboard clusters={agentClusters} />
        <RequestLookup clusters={agentClusters} />
      </div>
    </div>
  );
}

function Onboard({ clusters }: { clusters: string[] }): React.JSX.Element {
  const [minted, setMinted] = useState<Minted | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const [tunnelUrl, setTunnelUrl] = useState(`https://${window.location.hostname}:8443`);
  const [shell, setShell] = useState(true);
  const [copied, setCopied] = useState(false);

  const onSubmit = async (e: SyntheticEvent<HTMLFormElement>): Promise<void> => {
    e.preventDefault();
    const cluster = formField(new FormData(e.currentTarget), 'cluster');
    setBusy(true);
    setError(undefined);
    setMinted(undefined);
    try {
      setMinted(await post<Minted>('/api/agents/tokens', { cluster }));
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  const commands = minted ? onboardingCommands(minted, tunnelUrl, window.location.origin, shell) : '';
  return (
    <section className="card" aria-labelledby="onboard-h">
      <h2 id="onboard-h">Onboard a cluster</h2>
      <p className="muted small">
        Mints a single-use registration token (15 minutes) for a cluster listed with{' '}
        <code>backend: agent</code>, and shows the commands to run in that cluster (docs/agent-onboarding.md).
      </p>
      <form className="stack" onSubmit={(e) => void onSubmit(e)}>
        <label>
          cluster
          <select name="cluster" required defaultValue={clusters[0]}>
            {clusters.map((c) => (
              <option key={c} value={c}>
                {c}
              </option>
            ))}
          </select>
        </label>
        <label>
          tunnel URL the agent dials (PERISCOPE_AGENT_TUNNEL_URL)
          <input
            value={tunnelUrl}
            onChange={(e) => {
              setTunnelUrl(e.target.value);
            }}
          />
        </label>
        <label className="inline">
          <input
            type="checkbox"
            checked={shell}
            onChange={(e) => {
              setShell(e.target.checked);
            }}
          />{' '}
          enable the cluster shell on it
        </label>
        <button type="submit" className="btn primary" disabled={busy || clusters.length === 0}>
          {busy ? 'minting…' : 'mint a registration token'}
        </button>
      </form>
      {error && (
        <p role="alert" className="error-text">
          {error}
        </p>
      )}
      {minted && (
        <div className="minted" aria-live="polite">
          <p>
            Token for <strong>{minted.cluster}</strong>, valid until {dateTime(minted.expiresAt)}, single use:
          </p>
          <pre className="token" data-testid="agent-token">
            {minted.token}
          </pre>
          <p className="small">Run in the managed cluster:</p>
          <pre className="code" data-testid="helm-command">
            {commands}
          </pre>
          <button
            type="button"
            className="btn small"
            onClick={() => {
              void navigator.clipboard.writeText(commands).then(() => {
                setCopied(true);
                setTimeout(() => {
                  setCopied(false);
                }, 1500);
              });
            }}
          >
            {copied ? 'copied' : 'copy commands'}
          </button>
        </div>
      )}
    </section>
  );
}

function RequestLookup({ clusters }: { clusters: string[] }): React.JSX.Element {
  const [result, setResult] = useState<unknown>();
  const [error, setError] = useState<string | undefined>();
  const onSubmit = async (e: SyntheticEvent<HTMLFormElement>): Promise<void> => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const cluster = formField(f, 'cluster');
    const rid = formField(f, 'rid').trim();
    setError(undefined);
    setResult(undefined);
    try {
      setResult(await get(`/api/agents/${encodeURIComponent(cluster)}/requests/${encodeURIComponent(rid)}`));
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <section className="card" aria-labelledby="rid-h">
      <h2 id="rid-h">Look up a tunnel request</h2>
      <p className="muted small">
        The joined server and agent record of one request id (from a log line or an error).
      </p>
      <form className="stack" onSubmit={(e) => void onSubmit(e)}>
        <label>
          cluster
          <select name="cluster" defaultValue={clusters[0]}>
            {clusters.map((c) => (
              <option key={c} value={c}>
                {c}
              </option>
            ))}
          </select>
        </label>
        <label>
          request id
          <input name="rid" required placeholder="rid" />
        </label>
        <button type="submit" className="btn" disabled={clusters.length === 0}>
          look up
        </button>
      </form>
      {error && (
        <p role="alert" className="error-text">
          {error}
        </p>
      )}
      {result !== undefined && <pre className="json">{JSON.stringify(result, null, 2)}</pre>}
    </section>
  );
}
