import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

import { parse, parseAllDocuments } from 'yaml';

import { ensureBinaries } from '../k8s/binaries';

export const ROOT = resolve(__dirname, '../..');
export const CHARTS_DIR = join(ROOT, 'charts');
export const GOLDEN_DIR = join(__dirname, 'golden');
/** The cluster version the golden renders are made for (helm would otherwise assume its own). */
export const KUBE_VERSION = '1.36.0';
/** Set to rewrite golden files and chart READMEs instead of comparing; review the diff by eye. */
export const UPDATE = process.env['PERISCOPE_UPDATE_GOLDEN'] === '1';

export type ChartName = 'periscope' | 'periscope-agent';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [key: string]: unknown;
}

export interface RenderResult {
  ok: boolean;
  stdout: string;
  /** helm's stderr without its notice that charts/periscope-common is a link to the library. */
  stderr: string;
}

export interface RenderOptions {
  /** default: the chart name, as the READMEs install it */
  release?: string;
  namespace?: string;
  helm?: string;
}

let helmPath: string | undefined;

/**
 * The helm built for the local control plane. Unit test files run in parallel workers and
 * build.sh has no lock of its own, so a cold cache would be built by every worker at once;
 * flock lets one build while the others wait, then they find the cache warm.
 */
export function helmBinary(): string {
  if (helmPath === undefined) {
    execFileSync(
      'flock',
      [join(tmpdir(), 'periscope-k8sbin-build.lock'), 'bash', join(ROOT, 'e2e/k8s/build.sh')],
      {
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    helmPath = ensureBinaries({ quiet: true }).helm;
  }
  return helmPath;
}

function runHelm(helm: string, args: string[]): RenderResult {
  const r = spawnSync(helm, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 60_000 });
  const stderr = r.stderr
    .split('\n')
    .filter((l) => !/found symbolic link in path: .*periscope-common/.test(l))
    .join('\n')
    .trim();
  return { ok: r.status === 0, stdout: r.stdout, stderr };
}

/** Writes values to a temporary file (JSON is YAML), runs `fn` with its path, removes it. */
function withValuesFile<T>(values: unknown, fn: (file: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-chart-'));
  try {
    const file = join(dir, 'values.yaml');
    writeFileSync(file, JSON.stringify(values));
    return fn(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `helm template` of a chart in this repository with the given values. */
export function template(chart: ChartName, values: unknown, opts: RenderOptions = {}): RenderResult {
  return withValuesFile(values, (file) =>
    runHelm(opts.helm ?? helmBinary(), [
      'template',
      opts.release ?? chart,
      join(CHARTS_DIR, chart),
      '--namespace',
      opts.namespace ?? 'periscope-system',
      '--kube-version',
      KUBE_VERSION,
      '--values',
      file,
    ]),
  );
}

/** Like template, but throws with helm's message when rendering fails. */
export function render(chart: ChartName, values: unknown, opts: RenderOptions = {}): string {
  const r = template(chart, values, opts);
  if (!r.ok) throw new Error(`helm template ${chart} failed:\n${r.stderr}`);
  return r.stdout;
}

export function lint(chart: ChartName | 'periscope-common', values: unknown): RenderResult {
  return withValuesFile(values, (file) =>
    runHelm(helmBinary(), [
      'lint',
      '--strict',
      join(CHARTS_DIR, chart),
      '--kube-version',
      KUBE_VERSION,
      '--values',
      file,
    ]),
  );
}

export function parseManifests(text: string): K8sObject[] {
  // toJSON rather than toJS: the same call in yaml 1.x and 2.x (the workspace may hoist either).
  return parseAllDocuments(text)
    .map((d) => d.toJSON() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null && typeof o === 'object' && 'kind' in o);
}

export function find(objects: K8sObject[], kind: string, name?: string): K8sObject[] {
  return objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
}

export function one(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = find(objects, kind, name);
  if (found.length !== 1)
    throw new Error(`expected one ${kind}${name !== undefined ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!;
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    fieldRef?: { fieldPath: string };
  };
}

export interface Container {
  name: string;
  image: string;
  env?: EnvVar[];
  securityContext?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface PodSpec {
  containers: Container[];
  securityContext?: Record<string, unknown>;
  [key: string]: unknown;
}

export function podSpec(deployment: K8sObject): PodSpec {
  return (deployment as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
}

/** The plain env values of the first container of the chart's only Deployment, by name. */
export function deploymentEnv(objects: K8sObject[]): Map<string, EnvVar> {
  const env = podSpec(one(objects, 'Deployment')).containers[0]?.env ?? [];
  const byName = new Map<string, EnvVar>();
  for (const e of env) {
    if (byName.has(e.name)) throw new Error(`env ${e.name} is set twice`);
    byName.set(e.name, e);
  }
  return byName;
}

/** Compares with (or, in update mode, writes) a golden file. Returns [actual, expected]. */
export function golden(name: string, actual: string): [string, string] {
  const file = join(GOLDEN_DIR, name);
  if (UPDATE) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, actual);
  }
  if (!existsSync(file))
    throw new Error(`golden file ${file} is missing; create it with PERISCOPE_UPDATE_GOLDEN=1 and review it`);
  return [actual, readFileSync(file, 'utf8')];
}

export function chartValues(chart: ChartName): Record<string, unknown> {
  return parse(readFileSync(join(CHARTS_DIR, chart, 'values.yaml'), 'utf8')) as Record<string, unknown>;
}

export function appVersion(chart: ChartName): string {
  const meta = parse(readFileSync(join(CHARTS_DIR, chart, 'Chart.yaml'), 'utf8')) as { appVersion: string };
  return meta.appVersion;
}

/** The value at a dotted path of a nested object. */
export function at(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const key of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

/** Sets a value at a dotted path, creating the objects on the way. */
export function setAt(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let cur = obj;
  for (const key of keys.slice(0, -1)) {
    const next = cur[key];
    if (next === null || typeof next !== 'object') cur[key] = {};
    cur = cur[key] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]!] = value;
}
