import { replicaOf } from './replica';

/** A row's server replica under its cell (several replicas); nothing when the row names none. */
export function ReplicaNote({
  row,
  testId,
}: {
  row: { replica?: string | null };
  testId: string;
}): React.JSX.Element | null {
  const replica = replicaOf(row);
  if (replica === undefined) return null;
  return (
    <div className="muted small" data-testid={testId} title={`held by the server replica ${replica}`}>
      replica <code>{replica}</code>
    </div>
  );
}
