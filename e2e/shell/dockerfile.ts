/** A small Dockerfile reader for static checks: instructions, stages and build-argument defaults. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { REPO_ROOT } from './image-layout';

export interface Instruction {
  keyword: string;
  args: string;
  /** index of the stage the instruction belongs to; -1 before the first FROM */
  stage: number;
}

export interface Stage {
  index: number;
  /** image reference as written (build arguments not expanded) */
  from: string;
  /** image reference with global build-argument defaults expanded */
  image: string;
  name: string | undefined;
  platform: string | undefined;
  instructions: Instruction[];
}

export interface Dockerfile {
  path: string;
  text: string;
  instructions: Instruction[];
  /** ARGs declared before the first FROM, with their defaults */
  globalArgs: Record<string, string>;
  stages: Stage[];
  final: Stage;
}

export function readDockerfile(relativePath: string): Dockerfile {
  const path = join(REPO_ROOT, relativePath);
  const text = readFileSync(path, 'utf8');
  // Comment lines are dropped first (they may sit between continuation lines), then continuations joined.
  const logical = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');

  const instructions: Instruction[] = [];
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of logical) {
    const m = /^(\S+)\s*(.*)$/.exec(line);
    if (m === null) continue;
    const keyword = m[1]!.toUpperCase();
    const args = m[2]!.replace(/\s+/g, ' ');
    if (keyword === 'FROM') {
      const f = /^(?:--platform=(\S+) )?(\S+)(?: AS (\S+))?$/i.exec(args);
      if (f === null) throw new Error(`${relativePath}: cannot read FROM ${args}`);
      const from = f[2]!;
      stages.push({
        index: stages.length,
        from,
        image: from.replace(
          /\$\{(\w+)\}|\$(\w+)/g,
          (_, a?: string, b?: string) => globalArgs[a ?? b ?? ''] ?? '',
        ),
        name: f[3],
        platform: f[1],
        instructions: [],
      });
    }
    const instruction: Instruction = { keyword, args, stage: stages.length - 1 };
    instructions.push(instruction);
    if (stages.length === 0 && keyword === 'ARG') {
      const a = /^(\w+)(?:=(.*))?$/.exec(args);
      if (a !== null) globalArgs[a[1]!] = a[2] ?? '';
    } else if (stages.length > 0) stages[stages.length - 1]!.instructions.push(instruction);
  }
  const final = stages[stages.length - 1];
  if (final === undefined) throw new Error(`${relativePath}: no FROM`);
  return { path, text, instructions, globalArgs, stages, final };
}

/** `ARG NAME=default` values declared inside a stage. */
export function stageArgs(stage: Stage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const i of stage.instructions) {
    if (i.keyword !== 'ARG') continue;
    const a = /^(\w+)(?:=(.*))?$/.exec(i.args);
    if (a !== null) out[a[1]!] = a[2] ?? '';
  }
  return out;
}

export function runs(stage: Stage): string[] {
  return stage.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
}

export interface Copy {
  from: string | undefined;
  chmod: string | undefined;
  chown: string | undefined;
  sources: string[];
  dest: string;
}

export function copies(stage: Stage): Copy[] {
  return stage.instructions
    .filter((i) => i.keyword === 'COPY')
    .map((i) => {
      const words = i.args.split(' ');
      const flags: Record<string, string> = {};
      while (words[0]?.startsWith('--') === true) {
        const [k, v] = words.shift()!.slice(2).split('=');
        flags[k!] = v ?? '';
      }
      const dest = words.pop() ?? '';
      return { from: flags['from'], chmod: flags['chmod'], chown: flags['chown'], sources: words, dest };
    });
}

/** Parses an exec-form (JSON array) instruction argument. */
export function execForm(args: string): string[] {
  return JSON.parse(args) as string[];
}

/** Stage by name or index, as `COPY --from=` refers to it. */
export function stageNamed(file: Dockerfile, ref: string): Stage | undefined {
  return file.stages.find((s) => s.name === ref || String(s.index) === ref);
}
