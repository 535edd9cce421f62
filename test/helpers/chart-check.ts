// SPDX-License-Identifier: Apache-2.0
// The chart as test/unit/chart.test.ts examines it: loaded, its values checked
// against its schema as Helm checks them (errors worded with the key's path),
// rendered and parsed into objects, and the exporter started with a rendered
// container's arguments, or asked for its flags.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Ajv, { type ErrorObject } from 'ajv';
import YAML from 'yaml';
import { DEFAULT_BPF_DIR } from '../../src/paths';
import { cgroup2Mount } from '../../src/system';
import { loadChart, mergeValues, renderChart, splitManifests, type Chart } from './helm-chart';

export const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
export const CHART_DIR = path.join(ROOT, 'helm', 'bpfnet-exporter');
export const DASHBOARDS = path.join(ROOT, 'dashboards');
export const BIN = path.join(ROOT, 'bin', 'bpfnet-exporter');
// the README's install command: helm install bpfnet-exporter ./helm/bpfnet-exporter -n monitoring
export const RELEASE = { name: 'bpfnet-exporter', namespace: 'monitoring' };

export type Obj = Record<string, any>;
export type Values = Record<string, unknown>;

export const chart: Chart = loadChart(CHART_DIR);
export const allOn = YAML.parse(fs.readFileSync(path.join(CHART_DIR, 'ci', 'all-on-values.yaml'), 'utf8')) as Values;

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const validateValues = ajv.compile(chart.schema);

/** An error as Helm words it: the key's path, then what is wrong. */
export function helmStyle(e: ErrorObject): string {
  let key = e.instancePath
    .split('/')
    .slice(1)
    .map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s}`))
    .join('')
    .replace(/^\./, '');
  if (e.keyword === 'additionalProperties') key += `${key ? '.' : ''}${(e.params as { additionalProperty: string }).additionalProperty}`;
  return `${key || '(root)'}: ${e.message}`;
}

export function schemaErrors(values: Values): string[] {
  return validateValues(values) ? [] : validateValues.errors!.map(helmStyle);
}

/** Merged values, checked as helm install checks them, then rendered and parsed. */
export function render(override: Values = {}, opts: { chart?: Chart; skipSchema?: boolean } = {}) {
  const c = opts.chart ?? chart;
  const values = mergeValues(c.values, override);
  if (!opts.skipSchema) assert.deepEqual(schemaErrors(values), [], 'the values pass the schema');
  const out = renderChart(c, RELEASE, override);
  const objects: Obj[] = [];
  for (const [template, text] of out.manifests) {
    for (const doc of splitManifests(text)) {
      const parsed = YAML.parseDocument(doc, { uniqueKeys: true });
      assert.deepEqual(
        [...parsed.errors, ...parsed.warnings].map((e) => e.message),
        [],
        `${template} is well-formed YAML:\n${doc}`,
      );
      const obj = parsed.toJS() as Obj;
      assert.equal(typeof obj, 'object', `${template} renders an object:\n${doc}`);
      objects.push(obj);
    }
  }
  const find = (kind: string) => objects.filter((o) => o.kind === kind);
  const one = (kind: string) => {
    const found = find(kind);
    assert.equal(found.length, 1, `one ${kind}`);
    return found[0]!;
  };
  return { objects, notes: out.notes, find, one };
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
