/**
 * The kubectl-only session: a line-editing prompt (node:readline) whose every line is parsed
 * (`parse.ts`), checked (`rules.ts`) and run as one kubectl or helm call through the audit
 * wrapper, with a fixed environment (`env.ts`). See docs/cluster-shell.md, "kubectl-only mode".
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import * as readline from 'node:readline';

import { exitCodeForSignal, inTerminalForegroundGroup } from '../common/child';
import { say } from '../common/output';
import { parseLine } from './parse';
import {
  BUILTINS,
  COMMON_RESOURCES,
  HELM_SUBCOMMANDS,
  KUBECTL_CONFIG_SUBCOMMANDS,
  KUBECTL_SUBCOMMANDS,
  decide,
  type RuleContext,
  type Tool,
} from './rules';

export const PROMPT = 'kubectl> ';
/** Lines of history kept in memory for the up arrow and `history` (never written to disk). */
export const HISTORY_SIZE = 500;

const BRACKETED_PASTE_ON = '\x1b[?2004h';
const BRACKETED_PASTE_OFF = '\x1b[?2004l';

export const MULTI_LINE_REFUSAL =
  'refused: the input holds more than one line (pasted text with line breaks?); nothing ran. ' +
  'Paste or type one command at a time; "help" lists what is allowed';

export function helpText(): string {
  return [
    'This is a kubectl-only cluster shell: each line runs one kubectl or helm command, nothing else.',
    '',
    '  get pods -A                  kubectl is implied: same as "kubectl get pods -A"',
    '  kubectl describe node x      a leading "kubectl" is fine too',
    '  helm list -A                 helm commands need the word "helm"',
    '',
    `kubectl commands: ${KUBECTL_SUBCOMMANDS.join(' ')}`,
    `  (kubectl config: ${KUBECTL_CONFIG_SUBCOMMANDS.join(' ')})`,
    `helm commands: ${HELM_SUBCOMMANDS.join(' ')}`,
    `built in: ${BUILTINS.join(' ')} (Ctrl-D also exits)`,
    '',
    'Quoting works as in bash (\'…\', "…", \\). Not available: pipes, redirections, ;, &&, ||, $(…),',
    'backticks, variables, ! history, environment assignments, other programs and plugins, flags that',
    'change credentials or cluster (--kubeconfig, --token, --server/-s, --as, --context, …, helm --kube-*),',
    'exec/attach/debug/port-forward into periscope-shell-* pods or the session namespace, kubectl cp.',
    '"kubectl edit" opens nano in restricted mode (^O saves, ^X leaves). Up/down: history; Tab: completion.',
    '',
  ].join('\n');
}

const RESOURCE_VERBS = new Set([
  'get',
  'describe',
  'edit',
  'delete',
  'label',
  'annotate',
  'patch',
  'explain',
  'scale',
  'create',
  'set',
  'wait',
]);

/** Tab completion: builtins, tools and subcommands, then common resource types. */
export function complete(line: string): [string[], string] {
  const words = line.split(/[ \t]+/);
  const current = words[words.length - 1] ?? '';
  const before = words.slice(0, -1).filter((w) => w !== '');
  let candidates: readonly string[] = [];
  if (before.length === 0) candidates = [...BUILTINS, 'kubectl', 'helm', ...KUBECTL_SUBCOMMANDS];
  else if (before.length === 1 && before[0] === 'helm') candidates = HELM_SUBCOMMANDS;
  else if (before.length === 1 && before[0] === 'kubectl') candidates = KUBECTL_SUBCOMMANDS;
  else {
    const sub = before[0] === 'kubectl' ? before[1] : before[0];
    const afterSub = before[0] === 'kubectl' ? before.length === 2 : before.length === 1;
    if (sub === 'config' && afterSub) candidates = KUBECTL_CONFIG_SUBCOMMANDS;
    else if (sub !== undefined && RESOURCE_VERBS.has(sub) && afterSub) candidates = COMMON_RESOURCES;
  }
  const hits = [...new Set(candidates)].filter((c) => c.startsWith(current));
  return [hits.map((h) => (hits.length === 1 ? `${h} ` : h)), current];
}

export interface KubectlModeOptions {
  sessionId: string;
  /** the children's fixed environment (env.ts) */
  env: NodeJS.ProcessEnv;
  toolDir: string;
  rules: RuleContext;
  input?: NodeJS.ReadStream;
  output?: NodeJS.WriteStream;
}

/** Runs one tool call on our terminal and resolves with its exit status (128+N for a signal). */
function runTool(
  toolDir: string,
  tool: Tool,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<number> {
  return new Promise((resolve) => {
    const listeners: [NodeJS.Signals, () => void][] = [];
    let done = false;
    const child = spawn(join(toolDir, tool), [...args], { stdio: 'inherit', env, argv0: tool });
    const pass = (signal: NodeJS.Signals): void => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    };
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      for (const [signal, listener] of listeners) process.removeListener(signal, listener);
      resolve(code);
    };
    // Terminal signals reach the whole foreground group, the child included: we only survive them
    // (Ctrl-C goes to the command, not the session). Sent to us alone, they are passed on.
    for (const signal of ['SIGINT', 'SIGQUIT'] as const)
      listeners.push([
        signal,
        () => {
          if (!inTerminalForegroundGroup()) pass(signal);
        },
      ]);
    for (const signal of ['SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const)
      listeners.push([
        signal,
        () => {
          pass(signal);
        },
      ]);
    // Ctrl-Z stops the whole group, and nobody here has job control to continue it: we survive
    // it and continue the command.
    listeners.push([
      'SIGTSTP',
      () => {
        setTimeout(() => {
          pass('SIGCONT');
        }, 50);
      },
    ]);
    for (const [signal, listener] of listeners) process.on(signal, listener);
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (child.pid === undefined) {
        say('periscope-shell', `cannot run ${tool}: ${err.message}`);
        finish(126);
      }
    });
    child.once('exit', (code, signal) => {
      finish(signal !== null ? exitCodeForSignal(signal) : (code ?? 1));
    });
  });
}

/** The prompt loop; resolves with the session's exit code (`exit [n]`, or 0 on Ctrl-D). */
export function runKubectlMode(opts: KubectlModeOptions): Promise<number> {
  const input = opts.input ?? process.stdin;
  const output = opts.output ?? process.stdout;
  const terminal = input.isTTY && output.isTTY;
  const write = (text: string): void => {
    output.write(text);
  };

  return new Promise((resolve) => {
    let exitCode = 0;
    let busy = false;
    /** `exit` was typed: run nothing more */
    let exiting = false;
    /** the input ended (Ctrl-D, end of a pipe) or `exit`: finish once idle */
    let closed = false;
    let finished = false;
    const queue: string[] = [];
    let batch: string[] = [];
    let pasting = false;
    let pastedLines = 0;

    write(
      `periscope-shell: kubectl-only session ${opts.sessionId}. Type kubectl or helm commands (e.g. "get pods");\n` +
        '"help" lists what is allowed; "exit" or Ctrl-D ends the session.\n',
    );
    if (terminal) write(BRACKETED_PASTE_ON);
    const rl = readline.createInterface({
      input,
      output,
      terminal,
      prompt: PROMPT,
      historySize: HISTORY_SIZE,
      removeHistoryDuplicates: true,
      completer: complete,
    });
    const history = (): readonly string[] => (rl as unknown as { history?: string[] }).history ?? [];
    const clearLine = (): void => {
      rl.write(null, { ctrl: true, name: 'e' });
      rl.write(null, { ctrl: true, name: 'u' });
    };

    const finish = (): void => {
      if (finished) return;
      finished = true;
      if (terminal) write(BRACKETED_PASTE_OFF);
      resolve(exitCode);
    };

    const runLine = async (line: string): Promise<void> => {
      const parsed = parseLine(line);
      if (!parsed.ok) {
        write(`${parsed.message}\n`);
        return;
      }
      const d = decide(parsed.words, opts.rules);
      switch (d.kind) {
        case 'empty':
          return;
        case 'refused':
          write(`${d.message}\n`);
          return;
        case 'builtin':
          switch (d.name) {
            case 'help':
              write(helpText());
              return;
            case 'clear':
              write('\x1b[H\x1b[2J');
              return;
            case 'history': {
              const h = [...history()].reverse();
              write(h.map((l, i) => `${String(i + 1).padStart(5)}  ${l}\n`).join(''));
              return;
            }
            case 'exit': {
              const arg = d.args[0];
              if (d.args.length > 1 || (arg !== undefined && !/^\d{1,3}$/.test(arg))) {
                write('usage: exit [status 0-255]\n');
                return;
              }
              exitCode = arg === undefined ? 0 : Number(arg) & 0xff;
              exiting = true;
              rl.close();
              return;
            }
          }
          return;
        case 'run': {
          // Hand the terminal to the command: no raw mode, readline not reading, no bracketed
          // paste (nano and kubectl see the terminal as a shell would leave it).
          rl.pause();
          if (terminal) {
            write(BRACKETED_PASTE_OFF);
            input.setRawMode(false);
          }
          const code = await runTool(opts.toolDir, d.tool, d.args, opts.env);
          if (terminal) {
            input.setRawMode(true);
            write(BRACKETED_PASTE_ON);
          }
          if (code >= 128) write('\n');
          rl.resume();
          return;
        }
      }
    };

    const drain = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      while (queue.length > 0 && !exiting) {
        const line = queue.shift() as string;
        await runLine(line);
      }
      busy = false;
      if (closed) finish();
      else rl.prompt();
    };

    const flushBatch = (): void => {
      const lines = batch;
      batch = [];
      // Lines that arrived together, or a line with more text behind it, came from a paste (or a
      // paste-like burst): run none of them.
      if (terminal && (lines.length > 1 || rl.line.length > 0)) {
        clearLine();
        write(`${MULTI_LINE_REFUSAL}\n`);
        rl.prompt();
        return;
      }
      queue.push(...lines);
      void drain();
    };

    if (terminal) {
      input.on('keypress', (_s: string | undefined, key: { name?: string } | undefined) => {
        if (key?.name === 'paste-start') {
          pasting = true;
          pastedLines = 0;
        } else if (key?.name === 'paste-end') {
          pasting = false;
          if (pastedLines > 0) {
            pastedLines = 0;
            clearLine();
            write(`\n${MULTI_LINE_REFUSAL}\n`);
            rl.prompt();
          }
        }
      });
    }

    rl.on('line', (line: string) => {
      if (exiting) return;
      if (pasting) {
        pastedLines++;
        return;
      }
      if (!terminal) {
        // A script on a pipe (tests, `kubectl exec` without -t): one line after another.
        queue.push(line);
        void drain();
        return;
      }
      if (busy) {
        // more input behind a line that is already running: a paste, never run silently
        write(`${MULTI_LINE_REFUSAL}\n`);
        return;
      }
      batch.push(line);
      if (batch.length === 1) setImmediate(flushBatch);
    });
    rl.on('SIGINT', () => {
      // Ctrl-C at the prompt clears the line, as in bash.
      clearLine();
      write('^C\n');
      rl.prompt();
    });
    // Ctrl-Z at the prompt: nobody here could continue a stopped session, so it does nothing.
    rl.on('SIGTSTP', () => undefined);
    rl.on('close', () => {
      closed = true;
      if (!busy && queue.length === 0) finish();
      else void drain();
    });
    rl.prompt();
  });
}
