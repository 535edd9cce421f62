// SPDX-License-Identifier: Apache-2.0
// The chart as test/unit/chart.test.ts examines it, through the real Helm
// (test/helpers/helm.ts): values checked against values.schema.json by Helm
// (its own wording of the errors), `helm lint --strict` over every values
// file rendered, the chart rendered by `helm install --dry-run=client` (the
// manifest and NOTES.txt in one run) and parsed into objects, each checked
// against the Kubernetes API's types (test/helpers/k8s-models.ts); and the
// exporter started with a rendered container's arguments, or asked for its
// flags.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { DEFAULT_BPF_DIR } from '../../src/paths';
import { cgroup2Mount } from '../../src/system';
import { helm, type HelmRun } from './helm';
import { objectErrors } from './k8s-models';

export const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
export const CHART_DIR = path.join(ROOT, 'helm', 'bpfnet-exporter');
export const DASHBOARDS = path.join(ROOT, 'dashboards');
export const BIN = path.join(ROOT, 'bin', 'bpfnet-exporter');
// the README's install command: helm install bpfnet-exporter ./helm/bpfnet-exporter -n monitoring
export const RELEASE = { name: 'bpfnet-exporter', namespace: 'monitoring' };

export type Obj = Record<string, any>;
export type Values = Record<string, unknown>;

const readYaml = (file: string) => YAML.parse(fs.readFileSync(path.join(CHART_DIR, file), 'utf8')) as Obj;
/** Chart.yaml, values.yaml and values.schema.json as the chart has them. */
export const chart = {
  metadata: readYaml('Chart.yaml'),
  values: readYaml('values.yaml') as Values,
  schema: JSON.parse(fs.readFileSync(path.join(CHART_DIR, 'values.schema.json'), 'utf8')) as Obj,
};
export const allOn = readYaml('ci/all-on-values.yaml') as Values;

const isMap = (v: unknown): v is Values => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Values over values, maps merged key by key, as Helm merges two -f files. */
export function mergeValues(base: Values, over: Values): Values {
  const out: Values = structuredClone(base);
  for (const [k, v] of Object.entries(over)) out[k] = isMap(v) && isMap(out[k]) ? mergeValues(out[k] as Values, v) : structuredClone(v);
  return out;
}

/** Runs helm with these values in a file of their own (-f), removed after:
 * JSON, which Helm's YAML 1.1 reads as written (YAML 1.2 writers leave
 * strings such as yes unquoted, which it reads as booleans). */
function withValues(values: Values, args: (file: string) => string[]): HelmRun {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bpfnet-chart-values-'));
  try {
    const file = path.join(dir, 'values.json');
    fs.writeFileSync(file, JSON.stringify(values));
    return helm(args(file));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Helm's schema errors for these values over values.yaml, as it prints them
 * (one line each, indented as Helm nests them); empty if they pass. */
export function schemaErrors(values: Values, chartDir = CHART_DIR): string[] {
  const r = withValues(values, (f) => ['template', RELEASE.name, chartDir, '-n', RELEASE.namespace, '-f', f]);
  if (r.status === 0) return [];
  const head = `Error: values don't meet the specifications of the schema(s) in the following chart(s):\n${path.basename(chartDir)}:\n`;
  assert.ok(r.stderr.startsWith(head), `helm fails for another reason than the schema:\n${r.stderr}`);
  return r.stderr.slice(head.length).trimEnd().split('\n');
}

/** `helm lint --strict` of the chart with these values: its problems. */
export function lintProblems(values: Values, chartDir = CHART_DIR): string[] {
  const r = withValues(values, (f) => ['lint', '--strict', chartDir, '-f', f]);
  const problems = r.stdout.split('\n').filter((l) => /^\[(WARNING|ERROR)\]/.test(l));
  if (r.status !== 0 && !problems.length) problems.push(r.stdout + r.stderr);
  return problems;
}

export interface Rendered {
  objects: Obj[];
  notes: string;
  /** what Helm printed on stderr: its warnings */
  warnings: string;
  find(kind: string): Obj[];
  one(kind: string): Obj;
}

/** The chart rendered by Helm with these values, parsed; nothing checked but
 * that Helm renders it and every document is one well-formed YAML object. */
export function renderRaw(values: Values = {}, opts: { chartDir?: string; skipSchema?: boolean } = {}): Rendered {
  const dir = opts.chartDir ?? CHART_DIR;
  const r = withValues(values, (f) => [
    'install',
    RELEASE.name,
    dir,
    '-n',
    RELEASE.namespace,
    '--dry-run=client',
    '-o',
    'json',
    '-f',
    f,
    ...(opts.skipSchema ? ['--skip-schema-validation'] : []),
  ]);
  assert.equal(r.status, 0, `helm renders ${JSON.stringify(values)}:\n${r.stderr}`);
  const release = JSON.parse(r.stdout) as { manifest: string; info: { notes?: string } };
  const objects: Obj[] = [];
  for (const doc of YAML.parseAllDocuments(release.manifest, { uniqueKeys: true })) {
    assert.deepEqual(
      [...doc.errors, ...doc.warnings].map((e) => e.message),
      [],
      `well-formed YAML:\n${String(doc)}`,
    );
    const obj = doc.toJS() as Obj | null;
    if (obj === null) continue;
    assert.equal(typeof obj, 'object', `an object:\n${String(doc)}`);
    objects.push(obj);
  }
  const find = (kind: string) => objects.filter((o) => o.kind === kind);
  const one = (kind: string) => {
    const found = find(kind);
    assert.equal(found.length, 1, `one ${kind}`);
    return found[0]!;
  };
  return { objects, notes: release.info.notes ?? '', warnings: r.stderr, find, one };
}

/** The chart as `helm install` renders it with these values: they pass the
 * schema and `helm lint --strict`, Helm warns of nothing (such as a map
 * given where values.yaml has a list), and every object is one the API takes. */
export function render(values: Values = {}, opts: { chartDir?: string; skipSchema?: boolean } = {}): Rendered {
  if (!opts.skipSchema) assert.deepEqual(lintProblems(values, opts.chartDir), [], `helm lint --strict with ${JSON.stringify(values)}`);
  const out = renderRaw(values, opts);
  assert.equal(out.warnings, '', `helm warns of ${JSON.stringify(values)}`);
  for (const o of out.objects) assert.deepEqual(objectErrors(o), [], `${o.kind} ${o.metadata?.name}`);
  return out;
}

/** A copy of the chart in a temporary directory, for a test to change; removed by remove(). */
export function chartCopy(): { dir: string; remove(): void } {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bpfnet-chart-'));
  const dir = path.join(tmp, path.basename(CHART_DIR));
  fs.cpSync(CHART_DIR, dir, { recursive: true });
  return { dir, remove: () => fs.rmSync(tmp, { recursive: true, force: true }) };
}

export function container(ds: Obj): Obj {
  assert.equal(ds.spec.template.spec.containers.length, 1);
  return ds.spec.template.spec.containers[0];
}

export const isSubset = (small: Obj, big: Obj) => Object.entries(small).every(([k, v]) => big?.[k] === v);

/** The exporter's flags and their defaults, from its own --help. */
export function exporterHelp(): Map<string, string | undefined> {
  const r = spawnSync(process.execPath, [BIN, 'run', '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const flags = new Map<string, string | undefined>();
  let current = '';
  for (const line of r.stdout.split('\n')) {
    const m = /^ {2}--([a-z][a-z0-9-]*)\s/.exec(line);
    if (m) current = m[1]!;
    if (!current) continue;
    if (m) flags.set(current, undefined);
    const d = /\[default: (.*?)\]/.exec(line);
    if (d) flags.set(current, d[1]);
  }
  flags.delete('help');
  flags.delete('version');
  return flags;
}

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The exporter as the DaemonSet starts it (its arguments and plain
 * environment), without privileges: as root, with an empty capability
 * bounding set. It parses and checks everything before it asks for them. */
export function runExporter(ds: Obj): Promise<Run> {
  const c = container(ds);
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  for (const e of c.env ?? []) if (typeof e.value === 'string') env[e.name] = e.value;
  const argv = [process.execPath, BIN, ...c.args];
  const cmd = process.getuid?.() === 0 ? ['setpriv', '--bounding-set=-all', '--inh-caps=-all', ...argv] : argv;
  return new Promise((resolve) => {
    const child = execFile(cmd[0]!, cmd.slice(1), { env, timeout: 30_000, encoding: 'utf8' }, (_err, stdout, stderr) =>
      resolve({ status: child.exitCode, stdout, stderr }),
    );
  });
}

export const NOT_PERMITTED = 'bpfnet-exporter: not permitted to load BPF programs: run as root, or grant CAP_BPF and CAP_PERFMON\n';

/** The all-on values with what must exist on the node taken from this machine:
 * this process, its network namespace, its cgroup, the checkout's BPF objects. */
export function allOnHere(): Values {
  const mount = cgroup2Mount();
  assert.ok(mount, 'a cgroup2 mount');
  const own = /^0::(.*)$/m.exec(fs.readFileSync('/proc/self/cgroup', 'utf8'))![1]!;
  const cgroup = path.join(mount, own);
  return mergeValues(allOn, {
    exporter: {
      filters: { pids: [process.pid], netns: ['/proc/self/ns/net'], cgroups: [cgroup] },
      sidecars: { pids: [process.pid] },
      redirect: { cgroup },
      bpfDir: DEFAULT_BPF_DIR,
    },
  });
}
