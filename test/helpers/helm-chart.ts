// SPDX-License-Identifier: Apache-2.0
// A Helm chart read and rendered the way `helm template` does, for charts that
// keep to go-template.ts's subset: Chart.yaml, values.yaml merged with given
// values, .Files (what .helmignore and Helm leave in), templates/*, the Helm
// and Sprig functions listed in helmFunctions, documents split on "---" as
// Helm splits them. No helm binary exists on these machines.
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { GoInt, GoStruct, TemplateSet, goPrint, truthy, type TemplateFunc } from './go-template';

export interface Chart {
  dir: string;
  metadata: Record<string, unknown>;
  values: Record<string, unknown>;
  schema: object;
  /** chart files .Files can read, by path relative to the chart */
  files: Map<string, Buffer>;
  /** templates/*, by path relative to the chart */
  templates: Map<string, string>;
}

type Values = Record<string, unknown>;

/** A glob as Helm's .Files.Glob and .helmignore read it: * and ? stop at "/". */
export function globRegExp(pattern: string): RegExp {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*\*/g, '\0')
    .replace(/\*/g, '[^/]*')
    .replace(/\?/g, '[^/]')
    .replace(/\0/g, '.*');
  return new RegExp(`^${re}$`);
}

function ignored(rel: string, isDir: boolean, rules: string[]): boolean {
  return rules.some((rule) => {
    const dirOnly = rule.endsWith('/');
    const pattern = dirOnly ? rule.slice(0, -1) : rule;
    if (dirOnly && !isDir) return false;
    // a pattern without "/" matches a name at any depth, as in .gitignore
    const subject = pattern.includes('/') ? rel : path.posix.basename(rel);
    return globRegExp(pattern).test(subject);
  });
}

function walk(dir: string, rel: string, rules: string[], out: Map<string, Buffer>): void {
  for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${entry.name}` : entry.name;
    if (ignored(p, entry.isDirectory(), rules)) continue;
    if (entry.isDirectory()) walk(dir, p, rules, out);
    else out.set(p, fs.readFileSync(path.join(dir, p)));
  }
}

export function loadChart(dir: string): Chart {
  const helmignore = path.join(dir, '.helmignore');
  const rules = fs.existsSync(helmignore)
    ? fs
        .readFileSync(helmignore, 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#'))
    : [];
  const all = new Map<string, Buffer>();
  walk(dir, '', rules, all);
  const files = new Map<string, Buffer>();
  const templates = new Map<string, string>();
  for (const [p, content] of all) {
    if (p.startsWith('templates/')) templates.set(p, content.toString('utf8'));
    // the loader keeps these apart from .Files
    else if (!['Chart.yaml', 'values.yaml', 'values.schema.json', '.helmignore'].includes(p) && !p.startsWith('charts/')) files.set(p, content);
  }
  return {
    dir,
    metadata: YAML.parse(all.get('Chart.yaml')!.toString('utf8')) as Record<string, unknown>,
    values: (YAML.parse(all.get('values.yaml')!.toString('utf8')) ?? {}) as Values,
    schema: JSON.parse(all.get('values.schema.json')!.toString('utf8')) as object,
    files,
    templates,
  };
}

const isMap = (v: unknown): v is Values => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Values over defaults as Helm coalesces them: maps merge key by key, other
 * values replace, and null removes a default. */
export function mergeValues(defaults: Values, override: Values): Values {
  const out: Values = structuredClone(defaults);
  for (const [k, v] of Object.entries(override)) {
    if (v === null) delete out[k];
    else if (isMap(v) && isMap(out[k])) out[k] = mergeValues(out[k] as Values, v);
    else out[k] = structuredClone(v);
  }
  return out;
}

/** toYaml: YAML with sorted keys and no trailing newline, as Helm's (sigs.k8s.io/yaml). */
function toYaml(v: unknown): string {
  const plain = (x: unknown): unknown =>
    x instanceof GoInt
      ? Number(x.value)
      : Array.isArray(x)
        ? x.map(plain)
        : isMap(x)
          ? Object.fromEntries(Object.entries(x).map(([k, y]) => [k, plain(y)]))
          : x;
  return YAML.stringify(plain(v), { sortMapEntries: true, indentSeq: false, lineWidth: 0 }).replace(/\n$/, '');
}

/** Sprig's empty: what default replaces. */
function empty(v: unknown): boolean {
  return !truthy(v);
}

function kindOf(v: unknown): string {
  if (v === null || v === undefined) return 'invalid';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return 'float64';
  if (v instanceof GoInt) return 'int64';
  if (Array.isArray(v)) return 'slice';
  if (v instanceof GoStruct) return 'struct';
  return 'map';
}

function toInt64(v: unknown): GoInt {
  if (v instanceof GoInt) return v;
  if (typeof v === 'number') return new GoInt(BigInt(Math.trunc(v)));
  if (typeof v === 'string' && /^-?\d+$/.test(v.trim())) return new GoInt(BigInt(v.trim()));
  if (v === null || v === undefined || v === false) return new GoInt(0n);
  if (v === true) return new GoInt(1n);
  throw new Error(`cannot make an integer of ${kindOf(v)}`);
}

/** Go's fmt.Sprintf for the verbs the chart uses: %s %d %v %q %%. */
function sprintf(format: string, ...args: unknown[]): string {
  let i = 0;
  return format.replace(/%([sdvq%])/g, (_, verb: string) => {
    if (verb === '%') return '%';
    if (i >= args.length) return `%!${verb}(MISSING)`;
    const a = args[i++];
    if (verb === 'd') {
      // Go prints %!d(float64=...) for a float: a chart that does so is wrong
      if (!(a instanceof GoInt)) throw new Error(`printf %d of a ${kindOf(a)}: pipe it through int64`);
      return a.value.toString();
    }
    if (verb === 'q') return JSON.stringify(goPrint(a));
    return goPrint(a);
  });
}

function goEqual(a: unknown, b: unknown): boolean {
  if (kindOf(a) !== kindOf(b)) throw new Error(`incompatible types for comparison: ${kindOf(a)} and ${kindOf(b)}`);
  if (a instanceof GoInt) return a.value === (b as GoInt).value;
  if (typeof a === 'object' && a !== null) throw new Error(`cannot compare ${kindOf(a)} values`);
  return a === b;
}

/** Sprig's indent: every line padded, empty ones too. */
function indent(n: unknown, s: unknown): string {
  const pad = ' '.repeat(Number(toInt64(n).value));
  return (
    pad +
    goPrint(s)
      .split('\n')
      .join('\n' + pad)
  );
}

/** The Helm and Sprig functions the chart may use; the chart keeps to them. */
function helmFunctions(templates: () => TemplateSet): Record<string, TemplateFunc> {
  const str = (v: unknown) => goPrint(v);
  return {
    include: (name, data) => templates().include(name as string, data),
    toYaml: (v) => toYaml(v),
    indent: (n, s) => indent(n, s),
    nindent: (n, s) => '\n' + indent(n, s),
    quote: (...args) =>
      args
        .filter((a) => a !== null && a !== undefined)
        .map((a) => JSON.stringify(str(a)))
        .join(' '),
    default: (d, ...given) => (given.length === 0 || empty(given[0]) ? d : given[0]),
    printf: (format, ...args) => sprintf(format as string, ...args),
    trunc: (n, s) => str(s).slice(0, Number(toInt64(n).value)),
    trimSuffix: (suffix, s) => (str(s).endsWith(suffix as string) ? str(s).slice(0, -(suffix as string).length || undefined) : str(s)),
    replace: (from, to, s) =>
      str(s)
        .split(from as string)
        .join(to as string),
    contains: (sub, s) => str(s).includes(sub as string),
    join: (sep, list) => (list as unknown[]).map(str).join(sep as string),
    base: (p) => path.posix.basename(str(p)),
    int64: (v) => toInt64(v),
    kindIs: (kind, v) => kindOf(v) === kind,
    not: (v) => !truthy(v),
    eq: (a, ...bs) => bs.some((b) => goEqual(a, b)),
    ne: (a, b) => !goEqual(a, b),
    len: (v) => new GoInt(BigInt(Array.isArray(v) || typeof v === 'string' ? v.length : Object.keys(v as object).length)),
  };
}

export interface Release {
  name: string;
  namespace: string;
}

export interface Rendered {
  /** rendered output of each template file, partials and NOTES.txt left out */
  manifests: Map<string, string>;
  notes: string;
  /** the merged values the templates saw */
  values: Values;
}

/** Renders every template as `helm template` (and `helm install`) would. */
export function renderChart(chart: Chart, release: Release, override: Values = {}): Rendered {
  const values = mergeValues(chart.values, override);
  const templates: TemplateSet = new TemplateSet(helmFunctions(() => templates));
  for (const [name, src] of chart.templates) templates.add(name, src);
  const files = chart.files;
  const Files = new GoStruct({
    Get: (name: string) => files.get(name)?.toString('utf8') ?? '',
    Glob: (pattern: string) => {
      const re = globRegExp(pattern);
      return Object.fromEntries([...files].filter(([p]) => re.test(p)));
    },
  });
  const meta = chart.metadata;
  const root = new GoStruct({
    Values: values,
    Release: new GoStruct({ Name: release.name, Namespace: release.namespace, Service: 'Helm', IsInstall: true, IsUpgrade: false, Revision: new GoInt(1n) }),
    Chart: new GoStruct({
      Name: meta.name,
      Version: meta.version,
      AppVersion: meta.appVersion,
      Description: meta.description,
      Type: meta.type,
      KubeVersion: meta.kubeVersion,
    }),
    Files,
  });
  const manifests = new Map<string, string>();
  let notes = '';
  for (const name of [...chart.templates.keys()].sort()) {
    const base = path.posix.basename(name);
    if (base.startsWith('_')) continue;
    const out = templates.execute(name, root);
    if (base === 'NOTES.txt') notes = out;
    else manifests.set(name, out);
  }
  return { manifests, notes, values };
}

/** Helm's releaseutil.SplitManifests: documents separated by a line starting
 * with "---"; documents of only white space are dropped. */
export function splitManifests(text: string): string[] {
  return text.split(/(?:^|\s*\n)---\s*/).filter((d) => d.trim() !== '');
}
