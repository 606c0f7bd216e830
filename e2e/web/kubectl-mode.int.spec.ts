/**
 * The kubectl-only cluster shell in the browser (PERISCOPE_CLUSTER_SHELL_MODE=kubectl): the real
 * session pod on the local control plane runs periscope-shell's restricted prompt with the real
 * kubectl behind the audit wrapper. It lists pods, edits a ConfigMap in restricted nano (the
 * change lands on the apiserver), refuses every escape with a message, and the close record on
 * the audit page lists the commands that ran. The escapes one by one are in
 * apps/shell/src/kubectl-mode/*.spec.ts.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { RunningSystem } from '../system/system';
import { hasPrompt, screenshot, terminalText, typeLine, waitPill, waitTerminal } from './browser';
import { SignedInRig } from './oncall-rig';

const CM = 'kubectl-mode-demo';

describe('kubectl-only cluster shell in the browser', () => {
  const rig = new SignedInRig();
  let system: RunningSystem;
  let page: Page;

  beforeAll(async () => {
    ({ system, page } = await rig.start('web-kubectl-mode', {
      agent: false,
      env: { PERISCOPE_CLUSTER_SHELL_MODE: 'kubectl' },
    }));
    await system.cluster.kubectlOk([
      '-n',
      'default',
      'create',
      'configmap',
      CM,
      '--from-literal=greeting=hello',
    ]);
  });

  afterAll(async () => {
    await rig.stop();
  });

  /** Types a line and waits for the prompt to come back after `expect` showed up. */
  async function run(line: string, expectText: string | RegExp, timeoutMs = 60_000): Promise<string> {
    const before = (await terminalText(page)).length;
    await typeLine(page, line);
    const test = (t: string): boolean => {
      const out = t.slice(before);
      return (
        (typeof expectText === 'string' ? out.includes(expectText) : expectText.test(out)) && hasPrompt(t)
      );
    };
    return (await waitTerminal(page, `the answer to ${line}`, test, timeoutMs)).slice(before);
  }

  it('runs kubectl, edits with restricted nano, refuses escapes, and audits the commands', async () => {
    await page
      .getByRole('table', { name: 'clusters' })
      .getByRole('link', { name: 'local', exact: true })
      .click();
    await page.getByRole('button', { name: 'Shell', exact: true }).click();
    await waitTerminal(
      page,
      'the kubectl prompt',
      (t) => t.includes('kubectl-only session') && hasPrompt(t),
      90_000,
    );
    await waitPill(page, /^connected · /);

    // the info expander says which mode runs
    await page.getByRole('button', { name: 'info', exact: true }).click();
    const details = page.locator('dl[aria-label="session details"]');
    await details.waitFor();
    const info = (await details.textContent()) ?? '';
    expect(info).toContain('cluster shell');
    expect(info).toMatch(/mode\s*kubectl/);
    const sessionId = /session id\s*([0-9a-f-]{36})/.exec(info)?.[1];
    expect(sessionId).toBeDefined();
    await page.getByRole('button', { name: 'info', exact: true }).click();

    // kubectl is implied; the real kubectl answers from the apiserver
    const pods = await run('get pods -A', `periscope-shell-${sessionId!}`);
    expect(pods).toContain('NAMESPACE');

    // kubectl edit opens nano in restricted mode; find the value, change it, save, leave
    await typeLine(page, `edit configmap ${CM} -n default`);
    // nano runs on the terminal's alternate screen: while it runs, the test reads that screen
    await waitTerminal(page, 'nano', (t) => t.includes('^X Exit') && t.includes('greeting: hello'), 60_000);
    await page.keyboard.press('Control+T'); // execute a command: disabled
    await waitTerminal(page, 'the restricted notice', (t) =>
      t.includes('This function is disabled in restricted mode'),
    );
    await page.keyboard.press('Control+W'); // search
    await page.keyboard.type('greeting: hello', { delay: 5 });
    await page.keyboard.press('Enter');
    await page.keyboard.press('End');
    await page.keyboard.type('-from-nano', { delay: 5 });
    await page.keyboard.press('Control+O');
    await waitTerminal(page, 'the write prompt', (t) => t.includes('File Name to Write'));
    await page.keyboard.press('Enter');
    await page.waitForTimeout(300);
    await page.keyboard.press('Control+X');
    await waitTerminal(page, 'the edit result', (t) => t.includes(`configmap/${CM} edited`) && hasPrompt(t));
    const stored = await system.cluster.kubectlOk([
      '-n',
      'default',
      'get',
      'configmap',
      CM,
      '-o',
      'jsonpath={.data.greeting}',
    ]);
    expect(stored.trim()).toBe('hello-from-nano');
    await screenshot(page, 'kubectl-mode');

    // every escape of the issue: refused with a message, nothing runs
    const escapes: [string, string][] = [
      ['get pods; id', 'refused: ";" (command list)'],
      ['get pods && id', 'refused: "&" (background job or "&&")'],
      ['get pods $(id)', 'refused: "$(" (command substitution)'],
      ['get pods `id`', 'refused: "`" (command substitution)'],
      ['!!', 'refused: "!" (history expansion)'],
      ['KUBECTL_EXTERNAL_DIFF=/bin/sh diff -f x', 'refused: setting an environment variable'],
      ['kubectl plugin list', 'refused: "kubectl plugin" is not available'],
      ['get pods --kubeconfig=/etc/periscope/kubeconfig', 'refused: --kubeconfig:'],
      [`exec -it periscope-shell-${sessionId!} -- bash`, '"kubectl exec" into periscope-shell-'],
      [`debug -it periscope-shell-${sessionId!} --image=busybox`, '"kubectl debug" into periscope-shell-'],
      ['exec -it some-pod -n periscope-system -- sh', '"kubectl exec" in namespace periscope-system'],
      ['bash', 'refused: "bash" is not a kubectl command'],
    ];
    for (const [line, message] of escapes) await run(line, message);

    // a paste with a line break runs nothing
    const before = (await terminalText(page)).length;
    await page.locator('.term-view:not([hidden]) .term-host').click();
    // what xterm.js gets from a real paste (it sends it bracketed: the prompt turned that on)
    await page.evaluate(`(() => {
      const area = document.querySelector('.term-view:not([hidden]) .term-host textarea');
      const data = new DataTransfer();
      data.setData('text/plain', 'get namespaces\\nget pods -A\\n');
      area.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
    })()`);
    await waitTerminal(page, 'the paste refusal', (t) =>
      t.slice(before).includes('refused: the input holds more than one line'),
    );
    expect((await terminalText(page)).slice(before)).not.toContain('kube-system');

    await typeLine(page, 'exit');
    await waitPill(page, /^closed · exit 0$/, 60_000);

    // the close record lists exactly the commands that ran
    await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Audit' }).click();
    await page.getByLabel('verb').fill('cluster_shell_close');
    await page.getByLabel('cluster', { exact: true }).fill('local');
    await page.getByRole('button', { name: 'apply' }).click();
    const table = page.getByRole('table', { name: 'audit events' });
    const row = table.getByRole('row').filter({ hasText: 'cluster_shell_close' }).first();
    await row.waitFor({ timeout: 30_000 });
    await row.getByRole('button', { name: /^details of / }).click();
    const commands = page.getByRole('table', { name: 'commands of the session' });
    await commands.waitFor();
    const listed = (await commands.textContent()) ?? '';
    expect(listed).toContain('kubectl get pods -A');
    expect(listed).toContain(`kubectl edit configmap ${CM} -n default`);
    expect(listed).not.toContain('plugin');
    expect(listed).not.toContain('diff');
    expect(listed).not.toContain('get namespaces');
    // the close envelope names the mode
    await page.getByText('full event', { exact: true }).first().click();
    const envelope = (await page.locator('pre.json').first().textContent()) ?? '';
    expect(envelope).toMatch(/"mode": "kubectl"/);
    await screenshot(page, 'kubectl-mode-audit');
  });
});
