// SPDX-License-Identifier: Apache-2.0
// A small engine for Go's text/template (go-template-parse.ts reads the
// templates), enough for the Helm chart's templates: actions with {{- -}} trimming and comments, pipelines,
// parenthesized commands, variables ($, $x :=, $x =), field chains on the dot,
// on variables and on parentheses, if/else if/else, with/else, range (lists
// and maps, in sorted key order, with one or two variables), define, and
// functions given by the caller (helm-chart.ts has Helm's). It is stricter
// than Go where a chart would be wrong anyway: printing a list, a map or
// bytes, or a field of nil, is an error here.
import { GoInt, parseTemplate, type ControlNode, type Node, type Operand, type Pipeline } from './go-template-parse';

export { GoInt };

/** A Go struct (.Release, .Chart, the top-level object): a missing field is an
 * error, where a missing map key is nil. */
export class GoStruct {
  constructor(fields: Record<string, unknown>) {
    Object.assign(this, fields);
  }
}

export type TemplateFunc = (...args: unknown[]) => unknown;

/** Go's truth: false, 0, nil, and empty strings, lists and maps are false. */
export function truthy(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === '') return false;
  if (v instanceof GoInt) return v.value !== 0n;
  if (Array.isArray(v) || Buffer.isBuffer(v)) return v.length > 0;
  if (typeof v === 'object' && !(v instanceof GoStruct)) return Object.keys(v).length > 0;
  return true;
}

/** A float64 as Go's %v prints it: shortest digits, exponent form from 1e+06
 * and below 1e-04 (which is why Helm charts pipe numbers through int64). */
export function goFloat(v: number): string {
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : v < 0 ? '-Inf' : 'NaN';
  if (v === 0) return Object.is(v, -0) ? '-0' : '0';
  const [mant, e] = v.toExponential().split('e') as [string, string];
  const exp = Number(e);
  if (exp < -4 || exp >= 6) {
    const digits = Math.abs(exp) < 10 ? `0${Math.abs(exp)}` : String(Math.abs(exp));
    return `${mant}e${exp < 0 ? '-' : '+'}${digits}`;
  }
  return String(v);
}

/** What {{ x }} prints. */
export function goPrint(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'number') return goFloat(v);
  if (v instanceof GoInt) return v.value.toString();
  if (Buffer.isBuffer(v)) throw new Error('printing bytes (Go would print a list of numbers): use .Files.Get');
  throw new Error(`printing a ${Array.isArray(v) ? 'list' : 'map'} (Go would print its debug form): use toYaml`);
}

type Scope = { name: string; value: unknown }[];

export class TemplateSet {
  private readonly defines = new Map<string, Node[]>();
  private readonly files = new Map<string, Node[]>();

  constructor(private readonly funcs: Record<string, TemplateFunc>) {}

  /** Parses one file; its defines join the set's. */
  add(name: string, src: string): void {
    this.files.set(name, parseTemplate(name, src, this.defines));
  }

  /** Executes a parsed file with data as the dot and $. */
  execute(name: string, data: unknown): string {
    const nodes = this.files.get(name);
    if (!nodes) throw new Error(`no template file ${name}`);
    return this.run(nodes, data, [{ name: '$', value: data }]);
  }

  /** Executes a {{define}}d template, as include does. */
  include(name: string, data: unknown): string {
    const nodes = this.defines.get(name);
    if (!nodes) throw new Error(`include: no template "${name}"`);
    return this.run(nodes, data, [{ name: '$', value: data }]);
  }

  private run(nodes: Node[], dot: unknown, scope: Scope): string {
    let out = '';
    const mark = scope.length;
    for (const n of nodes) {
      switch (n.kind) {
        case 'text':
          out += n.text;
          break;
        case 'action': {
          const v = this.pipeline(n.pipe, dot, scope, n.where);
          if (!n.pipe.vars.length) out += this.print(v, n.where);
          break;
        }
        case 'if':
        case 'with': {
          const inner = scope.length;
          const v = this.pipeline(n.pipe, dot, scope, n.where);
          if (truthy(v)) out += this.run(n.body, n.kind === 'with' ? v : dot, scope);
          else out += this.run(n.orElse, dot, scope);
          scope.length = inner;
          break;
        }
        case 'range':
          out += this.range(n, dot, scope);
          break;
      }
    }
    scope.length = mark;
    return out;
  }

  private range(n: ControlNode, dot: unknown, scope: Scope): string {
    const inner = scope.length;
    const pipe = { ...n.pipe, vars: [] };
    const v = this.pipeline(pipe, dot, scope, n.where);
    let entries: [unknown, unknown][];
    if (v === null || v === undefined) entries = [];
    else if (Array.isArray(v)) entries = v.map((x, i) => [new GoInt(BigInt(i)), x]);
    else if (typeof v === 'object' && !(v instanceof GoStruct) && !Buffer.isBuffer(v)) {
      entries = Object.keys(v)
        .sort()
        .map((k) => [k, (v as Record<string, unknown>)[k]]);
    } else throw new Error(`${n.where}: range can't iterate over ${goPrint(v)}`);
    if (!entries.length) return this.run(n.orElse, dot, scope);
    let out = '';
    for (const [k, x] of entries) {
      if (n.pipe.vars.length === 1) scope.push({ name: n.pipe.vars[0]!, value: x });
      else if (n.pipe.vars.length === 2) scope.push({ name: n.pipe.vars[0]!, value: k }, { name: n.pipe.vars[1]!, value: x });
      out += this.run(n.body, x, scope);
      scope.length = inner;
    }
    return out;
  }

  private print(v: unknown, where: string): string {
    try {
      return goPrint(v);
    } catch (err) {
      throw new Error(`${where}: ${(err as Error).message}`, { cause: err });
    }
  }

  private pipeline(p: Pipeline, dot: unknown, scope: Scope, where: string): unknown {
    let v: unknown;
    let piped = false;
    for (const cmd of p.cmds) {
      v = this.command(cmd, dot, scope, where, piped ? [v] : []);
      piped = true;
    }
    if (p.vars.length === 1) {
      if (p.assign) {
        const found = [...scope].reverse().find((s) => s.name === p.vars[0]);
        if (!found) throw new Error(`${where}: undefined variable ${p.vars[0]}`);
        found.value = v;
      } else scope.push({ name: p.vars[0]!, value: v });
    } else if (p.vars.length > 1) throw new Error(`${where}: two variables outside range`);
    return v;
  }

  private command(cmd: Operand[], dot: unknown, scope: Scope, where: string, final: unknown[]): unknown {
    const [first, ...rest] = cmd as [Operand, ...Operand[]];
    const arg = (op: Operand) => this.operand(op, dot, scope, where);
    if (first.kind === 'func') {
      if (first.name === 'and' || first.name === 'or') {
        // short-circuit, returning the deciding operand, as Go does
        const ops: (() => unknown)[] = [...rest.map((op) => () => arg(op)), ...final.map((f) => () => f)];
        let v: unknown;
        for (const get of ops) {
          v = get();
          if (truthy(v) === (first.name === 'or')) return v;
        }
        return v;
      }
      const fn = this.funcs[first.name];
      if (!fn) throw new Error(`${where}: function "${first.name}" not defined`);
      try {
        return fn(...rest.map(arg), ...final);
      } catch (err) {
        throw new Error(`${where}: ${first.name}: ${(err as Error).message}`, { cause: err });
      }
    }
    const v = arg(first);
    if (typeof v === 'function') return (v as TemplateFunc)(...rest.map(arg), ...final);
    if (rest.length || final.length) throw new Error(`${where}: can't give arguments to a value that is not a function`);
    return v;
  }

  private operand(op: Operand, dot: unknown, scope: Scope, where: string): unknown {
    switch (op.kind) {
      case 'lit':
        return op.value;
      case 'func':
        return this.command([op], dot, scope, where, []);
      case 'pipe':
        return this.pipeline(op.pipe, dot, scope, where);
    }
    let v: unknown;
    if (op.base === 'dot') v = dot;
    else if (op.base === 'pipe') v = this.pipeline(op.pipe!, dot, scope, where);
    else {
      const found = [...scope].reverse().find((s) => s.name === op.varName);
      if (!found) throw new Error(`${where}: undefined variable ${op.varName}`);
      v = found.value;
    }
    for (const key of op.path) {
      if (v === null || v === undefined) throw new Error(`${where}: nil pointer evaluating .${key}`);
      if (typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v)) throw new Error(`${where}: can't evaluate field ${key} of ${typeof v}`);
      if (v instanceof GoStruct && !(key in v)) throw new Error(`${where}: can't evaluate field ${key}`);
      const next = (v as Record<string, unknown>)[key];
      v = typeof next === 'function' ? (next as TemplateFunc).bind(v) : next;
    }
    return v;
  }
}
