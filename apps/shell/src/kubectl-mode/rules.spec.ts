import { describe, expect, it } from 'vitest';

import { parseLine } from './parse';
import { complete } from './prompt';
import { decide, namespaceValues, type RuleContext } from './rules';

const CTX: RuleContext = { shellNamespace: 'periscope-shells' };
const SELF = 'periscope-shell-6f1c1f0e-3a5b-4b8e-9d51-6a0f3c2b9e77';

function decideLine(line: string, ctx: RuleContext = CTX) {
  const parsed = parseLine(line);
  if (!parsed.ok) throw new Error(`test line does not parse: ${parsed.message}`);
  return decide(parsed.words, ctx);
}

describe(decide.name, () => {
  it.each<[string, 'kubectl' | 'helm', string[]]>([
    ['get pods -A', 'kubectl', ['get', 'pods', '-A']],
    ['kubectl get pods -A', 'kubectl', ['get', 'pods', '-A']],
    ['-n kube-system get pods', 'kubectl', ['-n', 'kube-system', 'get', 'pods']],
    ['kubectl --namespace=kube-system get pods', 'kubectl', ['--namespace=kube-system', 'get', 'pods']],
    ['kubectl -nkube-system get pods', 'kubectl', ['-nkube-system', 'get', 'pods']],
    ['kubectl -v 6 get ns', 'kubectl', ['-v', '6', 'get', 'ns']],
    ['edit deployment/web -n prod', 'kubectl', ['edit', 'deployment/web', '-n', 'prod']],
    ['get pods -oyaml', 'kubectl', ['get', 'pods', '-oyaml']],
    [
      "get pods -o jsonpath='{.items[*].status}'",
      'kubectl',
      ['get', 'pods', '-o', 'jsonpath={.items[*].status}'],
    ],
    ['exec -it web-0 -n prod -- sh', 'kubectl', ['exec', '-it', 'web-0', '-n', 'prod', '--', 'sh']],
    // after "--" come the remote command's own arguments
    [
      'exec web-0 -n prod -- kubectl --kubeconfig=/x get pods',
      'kubectl',
      ['exec', 'web-0', '-n', 'prod', '--', 'kubectl', '--kubeconfig=/x', 'get', 'pods'],
    ],
    ['logs -f deploy/web -n prod', 'kubectl', ['logs', '-f', 'deploy/web', '-n', 'prod']],
    ['port-forward svc/web 8080:80 -n prod', 'kubectl', ['port-forward', 'svc/web', '8080:80', '-n', 'prod']],
    ['debug node/n1 -it --image=busybox', 'kubectl', ['debug', 'node/n1', '-it', '--image=busybox']],
    [
      'debug node/n1 -it --image=busybox --profile=sysadmin',
      'kubectl',
      ['debug', 'node/n1', '-it', '--image=busybox', '--profile=sysadmin'],
    ],
    ['config view', 'kubectl', ['config', 'view']],
    ['config current-context', 'kubectl', ['config', 'current-context']],
    ['diff -f -', 'kubectl', ['diff', '-f', '-']],
    ['helm list -A', 'helm', ['list', '-A']],
    ['helm -n prod status web', 'helm', ['-n', 'prod', 'status', 'web']],
    [
      'helm template x repo/chart -s templates/a.yaml',
      'helm',
      ['template', 'x', 'repo/chart', '-s', 'templates/a.yaml'],
    ],
    ['helm upgrade web repo/web --set a=b', 'helm', ['upgrade', 'web', 'repo/web', '--set', 'a=b']],
  ])('runs %j', (line, tool, args) => {
    expect(decideLine(line)).toEqual({ kind: 'run', tool, args });
  });

  it('handles the builtins and an empty line', () => {
    expect(decideLine('help')).toEqual({ kind: 'builtin', name: 'help', args: [] });
    expect(decideLine('exit 3')).toEqual({ kind: 'builtin', name: 'exit', args: ['3'] });
    expect(decideLine('history')).toMatchObject({ kind: 'builtin', name: 'history' });
    expect(decideLine('   ')).toEqual({ kind: 'empty' });
  });

  // Every escape of the issue, each refused with a one-line message that names it.
  it.each<[string, string]>([
    ['ls -la', '"ls" is not a kubectl command'],
    ['bash', '"bash" is not a kubectl command'],
    ['/bin/sh', '"/bin/sh" is not a kubectl command'],
    ['nano /etc/passwd', '"nano" is not a kubectl command'],
    ['install foo', '"install" is not a kubectl command'],
    ['kubectl', 'kubectl needs a command'],
    ['kubectl plugin list', '"kubectl plugin" is not available: plugins are programs of their own'],
    ['kubectl krew install x', '"kubectl krew" is not available'],
    ['kubectl foo', '"kubectl foo" is not available'],
    ['kubectl cp prod/web-0:/etc/x /tmp/periscope-shell/audit.jsonl', '"kubectl cp" is not available'],
    ['kubectl proxy --www=/', '"kubectl proxy" is not available'],
    ['kubectl kustomize . --enable-exec', '"kubectl kustomize" is not available'],
    ['kubectl alpha x', '"kubectl alpha" is not available'],
    ['helm plugin install https://x', '"helm plugin" is not available: plugins are programs of their own'],
    ['helm diff upgrade x', '"helm diff" is not available'],
    ['helm pull repo/x --untar', '"helm pull" is not available'],
    ['helm', 'helm needs a command'],
    // identity and cluster flags, both forms, any position
    ['get pods --kubeconfig=/etc/periscope/kubeconfig', '--kubeconfig:'],
    ['get pods --kubeconfig /etc/passwd', '--kubeconfig:'],
    ['get pods --kube_config=/etc/x'.replace('kube_config', 'kubeconfig'), '--kubeconfig:'],
    ['get pods --token=abc', '--token:'],
    ['get pods --token abc', '--token:'],
    ['get pods --server=https://evil', '--server:'],
    ['get pods -s https://evil', '-s (--server)'],
    ['get pods -shttps://evil', '-s (--server)'],
    ['get pods -As https://evil', '-s (--server)'],
    ['get pods --as=system:admin', '--as:'],
    ['get pods --as system:admin', '--as:'],
    ['get pods --as-group=system:masters', '--as-group:'],
    ['get pods --as_group=system:masters', '--as-group:'],
    ['get pods --as-uid=0', '--as-uid:'],
    ['get pods --as-user-extra=a=b', '--as-user-extra:'],
    ['get pods --user=other', '--user:'],
    ['get pods --username=u', '--username:'],
    ['get pods --password=p', '--password:'],
    ['get pods --context=other', '--context:'],
    ['get pods --cluster other', '--cluster:'],
    ['get pods --certificate-authority=/x', '--certificate-authority:'],
    ['get pods --client-certificate=/x', '--client-certificate:'],
    ['get pods --client-key /x', '--client-key:'],
    ['get pods --insecure-skip-tls-verify', '--insecure-skip-tls-verify:'],
    ['get pods --tls-server-name=x', '--tls-server-name:'],
    ['get pods --cache-dir=/tmp/periscope-shell', '--cache-dir:'],
    ['get pods --profile=cpu --profile-output=/tmp/periscope-shell/audit.jsonl', '--profile-output:'],
    ['cluster-info dump --output-directory=/tmp/periscope-shell', '--output-directory:'],
    ['--kubeconfig=/etc/x get pods', '--kubeconfig=/etc/x before the kubectl command name'],
    ['kubectl --context x get pods', '--context before the kubectl command name'],
    ['helm list --kubeconfig=/etc/x', '--kubeconfig:'],
    ['helm list --kube-token=x', '--kube-token:'],
    ['helm list --kube-apiserver https://evil', '--kube-apiserver:'],
    ['helm list --kube-as-user=admin', '--kube-as-user:'],
    ['helm list --kube-context=x', '--kube-context:'],
    ['helm list --kube-ca-file=/x', '--kube-ca-file:'],
    ['helm install x repo/x --post-renderer=/bin/sh', '--post-renderer:'],
    ['helm install x repo/x --post-renderer /bin/sh', '--post-renderer:'],
    ['helm install x repo/x --post-renderer-args=-c', '--post-renderer-args:'],
    ['helm list --plugins-dir=/tmp', '--plugins-dir:'],
    ['helm template x repo/x --output-dir=/tmp/periscope-shell', '--output-dir:'],
    ['helm repo add x https://x --repository-config=/tmp/r', '--repository-config:'],
    ['helm registry login x --registry-config=/tmp/r', '--registry-config:'],
    // the shell's own pod and namespace
    [`exec -it ${SELF} -- bash`, `"kubectl exec" into ${SELF}`],
    [`exec -it pod/${SELF} -n other -- bash`, `"kubectl exec" into pod/${SELF}`],
    [`attach ${SELF}`, `"kubectl attach" into ${SELF}`],
    [`debug -it ${SELF} --image=busybox --target=shell`, `"kubectl debug" into ${SELF}`],
    [`debug web-0 -n prod --copy-to=${SELF}-copy`, `"kubectl debug" into ${SELF}-copy`],
    [`port-forward pods/${SELF} 9000`, `"kubectl port-forward" into pods/${SELF}`],
    ['exec -it periscope-shell-other -- sh', '"kubectl exec" into periscope-shell-other'],
    ['exec -it web-0 -n periscope-shells -- sh', '"kubectl exec" in namespace periscope-shells'],
    ['exec -it web-0 --namespace=periscope-shells -- sh', '"kubectl exec" in namespace periscope-shells'],
    ['-n periscope-shells exec -it web-0 -- sh', '"kubectl exec" in namespace periscope-shells'],
    ['port-forward svc/x 80 -nperiscope-shells', '"kubectl port-forward" in namespace periscope-shells'],
    ['debug node/n1 -n periscope-shells --image=busybox', '"kubectl debug" in namespace periscope-shells'],
    // kubeconfig: read-only verbs, never the credentials
    ['config view --raw', 'kubectl config view --raw/--flatten'],
    ['config view --flatten', 'kubectl config view --raw/--flatten'],
    ['config set-credentials x', '"kubectl config set-credentials" is not available'],
    ['config use-context other', '"kubectl config use-context" is not available'],
    ['config', '"kubectl config" is not available'],
  ])('refuses %j', (line, what) => {
    const d = decideLine(line);
    expect(d.kind).toBe('refused');
    if (d.kind !== 'refused') return;
    expect(d.message).toMatch(/^refused: /);
    expect(d.message).toContain(what);
    expect(d.message).toContain('"help" lists what is allowed');
    expect(d.message).not.toContain('\n');
  });

  it('refuses exec into the default namespace when that is the shell namespace', () => {
    expect(decideLine('exec -it web-0 -- sh', { shellNamespace: 'default' }).kind).toBe('refused');
    expect(decideLine('exec -it web-0 -- sh', { shellNamespace: 'periscope' }).kind).toBe('run');
    // without the namespace (an older pod spec) the pod-name rule still holds
    expect(decideLine(`exec -it ${SELF} -- sh`, {}).kind).toBe('refused');
  });

  it('reads every form of -n/--namespace', () => {
    expect(
      namespaceValues(['-n', 'a', '--namespace=b', '--namespace', 'c', '-nd', '-n=e', '--', '-n', 'f']),
    ).toEqual(['a', 'b', 'c', 'd', 'e']);
  });
});

describe(complete.name, () => {
  it('completes builtins, tools, subcommands and resource types', () => {
    expect(complete('ge')[0]).toEqual(['get ']);
    expect(complete('he')[0]).toEqual(['help', 'helm']);
    expect(complete('helm ro')[0]).toEqual(['rollback ']);
    expect(complete('kubectl des')[0]).toEqual(['describe ']);
    expect(complete('get depl')).toEqual([['deployments '], 'depl']);
    expect(complete('kubectl get po')[0]).toEqual(['poddisruptionbudgets', 'pods']);
    expect(complete('config cur')[0]).toEqual(['current-context ']);
    expect(complete('get pods x')[0]).toEqual([]);
  });
});
