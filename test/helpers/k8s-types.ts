// SPDX-License-Identifier: Apache-2.0
// Kubernetes objects checked field by field against the API's own types, as
// the official JavaScript client generates them from the API's OpenAPI
// document (@kubernetes/client-node, release-1.36): every key must be a
// field of its type, every value of the field's type. The API server drops or
// refuses what fails here; Helm itself would not notice.

interface Attribute {
  baseName: string;
  type: string;
  format: string;
}

type Model = { getAttributeTypeMap(): Attribute[] };

// an ES module: loaded by Node's require(esm); the package's index needs more
// than these plain model classes do
// eslint-disable-next-line @typescript-eslint/no-require-imports
const models = require('@kubernetes/client-node/dist/gen/models/ObjectSerializer.js') as Record<string, Model | undefined>;

/** The model of each kind the chart renders from core Kubernetes. */
export const CORE_KINDS: Record<string, string> = {
  'apps/v1/DaemonSet': 'V1DaemonSet',
  'v1/Service': 'V1Service',
  'v1/ServiceAccount': 'V1ServiceAccount',
  'v1/ConfigMap': 'V1ConfigMap',
};

function model(name: string): Model {
  const m = models[name];
  if (!m || typeof m.getAttributeTypeMap !== 'function') throw new Error(`no Kubernetes model ${name}`);
  return m;
}

/** Problems of value as the type the client names (V1PodSpec,
 * Array<V1Volume>, { [key: string]: string; }, IntOrString, number ...). */
function check(value: unknown, type: string, format: string, where: string, out: string[]): void {
  const array = /^Array<(.+)>$/.exec(type);
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  const kind = Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value;
  const bad = (expected: string) => out.push(`${where}: ${kind} where the API has ${expected}`);
  if (array) {
    if (!Array.isArray(value)) return void bad(type);
    value.forEach((v, i) => check(v, array[1]!, '', `${where}[${i}]`, out));
  } else if (map) {
    if (kind !== 'object') return void bad(type);
    for (const [k, v] of Object.entries(value as object)) check(v, map[1]!, '', `${where}.${k}`, out);
  } else if (type === 'string' || type === 'Date') {
    if (kind !== 'string') bad('a string');
  } else if (type === 'number') {
    if (kind !== 'number' || (/^int/.test(format) && !Number.isInteger(value))) bad(format || 'a number');
  } else if (type === 'boolean') {
    if (kind !== 'boolean') bad('a boolean');
  } else if (type === 'IntOrString') {
    if (!(kind === 'string' || (kind === 'number' && Number.isInteger(value)))) bad('an integer or a string');
  } else if (type === 'any' || type === 'object') {
    // free-form in the API
  } else {
    if (kind !== 'object') return void bad(type);
    const fields = new Map(
      model(type)
        .getAttributeTypeMap()
        .map((a) => [a.baseName, a]),
    );
    for (const [k, v] of Object.entries(value as object)) {
      const f = fields.get(k);
      if (!f) out.push(`${where}.${k}: no such field in ${type}`);
      else check(v, f.type, f.format, `${where}.${k}`, out);
    }
  }
}

/** Every problem of a core object, by path; empty if it is well-formed. */
export function checkObject(obj: { apiVersion?: unknown; kind?: unknown }): string[] {
  const type = CORE_KINDS[`${String(obj.apiVersion)}/${String(obj.kind)}`];
  if (!type) return [`${String(obj.apiVersion)} ${String(obj.kind)}: not a kind this check knows`];
  const out: string[] = [];
  check(obj, type, '', String(obj.kind), out);
  return out;
}
