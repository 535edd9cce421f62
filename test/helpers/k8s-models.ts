// SPDX-License-Identifier: Apache-2.0
// Kubernetes objects checked against kubernetes-models (the API's OpenAPI
// document) and @kubernetes-models/prometheus-operator (its CRDs), two ways:
// - the model's own validate(), its schema compiled by ajv: types, formats,
//   required fields, enums; it reports the first problem only, and it does
//   not refuse a field the API does not have (no additionalProperties);
// - so every key is also looked up in the model's declared TypeScript type
//   (the package's .d.ts, generated from the same schema, read with the
//   TypeScript compiler): a key no type declares is a field the API server
//   would refuse (kubectl's strict field validation) or silently drop.
import path from 'node:path';
import ts from 'typescript';

interface Kind {
  /** the module, under node_modules, without .js or .d.ts */
  module: string;
  /** its class and, with an I before it, its interface */
  name: string;
}

/** The kinds a chart may render, by apiVersion/kind. */
const KINDS: Record<string, Kind> = Object.fromEntries(
  [
    ['apps/v1', 'kubernetes-models/apps/v1', 'DaemonSet'],
    ['v1', 'kubernetes-models/v1', 'Service'],
    ['v1', 'kubernetes-models/v1', 'ServiceAccount'],
    ['v1', 'kubernetes-models/v1', 'ConfigMap'],
    ['v1', 'kubernetes-models/v1', 'Secret'],
    ['monitoring.coreos.com/v1', '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1', 'ServiceMonitor'],
    ['monitoring.coreos.com/v1', '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1', 'PodMonitor'],
    ['monitoring.coreos.com/v1', '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1', 'PrometheusRule'],
  ].map(([apiVersion, dir, name]) => [`${apiVersion}/${name}`, { module: `${dir}/${name}`, name: name! }]),
);

const NODE_MODULES = path.resolve(__dirname, '..', '..', '..', '..', 'node_modules');

type Model = new (data: object) => { validate(): void };

/** The model class: its package is ES modules only, loaded by Node's
 * require(esm) from its file (the package exports only import conditions). */
function modelClass(kind: Kind): Model {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require(path.join(NODE_MODULES, `${kind.module}.js`)) as Record<string, Model>)[kind.name]!;
}

let program: { checker: ts.TypeChecker; types: Map<string, ts.Type> } | undefined;

/** The declared interface of every kind, from one TypeScript program. */
function declaredTypes() {
  if (program) return program;
  const files = Object.values(KINDS).map((k) => path.join(NODE_MODULES, `${k.module}.d.ts`));
  const p = ts.createProgram(files, {
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    target: ts.ScriptTarget.ES2022,
    noEmit: true,
    types: [],
  });
  const checker = p.getTypeChecker();
  const types = new Map<string, ts.Type>();
  for (const [key, kind] of Object.entries(KINDS)) {
    const source = p.getSourceFile(path.join(NODE_MODULES, `${kind.module}.d.ts`))!;
    const symbol = checker.getExportsOfModule(checker.getSymbolAtLocation(source)!).find((s) => s.name === `I${kind.name}`);
    if (!symbol) throw new Error(`${kind.module}.d.ts declares no I${kind.name}`);
    types.set(key, checker.getDeclaredTypeOfSymbol(symbol));
  }
  program = { checker, types };
  return program;
}

/** Keys of value that type does not declare, by path. Type mismatches are
 * validate()'s to report: here a value of another type is passed over. */
function unknownFields(checker: ts.TypeChecker, value: unknown, type: ts.Type, where: string, out: string[]): void {
  if (value === null || typeof value !== 'object') return;
  const t = checker.getNonNullableType(type);
  const members = t.isUnion() ? t.types : [t];
  if (Array.isArray(value)) {
    const array = members.find((m) => checker.isArrayType(m));
    if (array) value.forEach((v, i) => unknownFields(checker, v, checker.getTypeArguments(array as ts.TypeReference)[0]!, `${where}[${i}]`, out));
    return;
  }
  const objects = members.filter((m) => m.flags & ts.TypeFlags.Object && !checker.isArrayType(m));
  if (!objects.length) return;
  for (const [k, v] of Object.entries(value)) {
    const field = objects.map((o) => o.getProperty(k)).find((s) => s !== undefined);
    const index = objects.map((o) => checker.getIndexTypeOfType(o, ts.IndexKind.String)).find((s) => s !== undefined);
    if (field) unknownFields(checker, v, checker.getTypeOfSymbolAtLocation(field, field.valueDeclaration ?? field.declarations![0]!), `${where}.${k}`, out);
    else if (index) unknownFields(checker, v, index, `${where}.${k}`, out);
    else out.push(`${where}.${k}: no such field in ${checker.typeToString(objects[0]!)}`);
  }
}

/** Every problem of a rendered object, by path; empty if the API takes it. */
export function objectErrors(obj: Record<string, unknown>): string[] {
  const key = `${String(obj.apiVersion)}/${String(obj.kind)}`;
  const kind = KINDS[key];
  if (!kind) return [`${String(obj.apiVersion)} ${String(obj.kind)}: not a kind kubernetes-models is asked about here`];
  const out: string[] = [];
  try {
    new (modelClass(kind))(structuredClone(obj)).validate();
  } catch (err) {
    out.push(`${kind.name}: ${(err as Error).message}`);
  }
  const { checker, types } = declaredTypes();
  unknownFields(checker, obj, types.get(key)!, kind.name, out);
  return out;
}
