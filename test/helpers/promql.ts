// SPDX-License-Identifier: Apache-2.0
// How a dashboard uses a metric, read from the syntax tree of Prometheus' own
// PromQL grammar (@prometheus-io/lezer-promql, the one its web UI parses
// with): each vector selector with its label matchers, its range, and the
// calls and aggregations around it. An expression the grammar cannot parse
// throws, with where.
import type { SyntaxNode } from '@lezer/common';
import { parser } from '@prometheus-io/lezer-promql';

export interface Matcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}

/** A call or aggregation around a selector: `rate`, `sum` (with its `by` labels)... */
export interface Enclosing {
  name: string;
  by?: string[];
}

export interface Selector {
  /** its metric name; a {__name__=~"..."} selector's regular expression */
  metric: string;
  matchers: Matcher[];
  range?: string;
  /** calls around the selector, outermost first */
  within: Enclosing[];
}

/** Grafana's template variables: `$name`, `${name}`, `${name:format}`, `[[name]]`. */
const VARIABLE = /\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g;

function unquote(s: string): string {
  return s[0] === '`' ? s.slice(1, -1) : s.slice(1, -1).replace(/\\(.)/g, '$1');
}

/** The vector selectors of expr, each with what encloses it. */
export function selectors(expr: string): Selector[] {
  // Grafana's variables are not PromQL ([$__rate_interval] is no duration):
  // the grammar reads each as a duration of the same length, so that the
  // tree's positions are positions in expr, whose text is what is reported.
  const tree = parser.parse(expr.replace(VARIABLE, (v) => '0'.repeat(v.length - 1) + 's'));
  const text = (n: SyntaxNode | null) => (n ? expr.slice(n.from, n.to) : '');
  const fail = (at: number, why: string) => new Error(`${why} at ${at}: ${expr.slice(0, at)}⚠${expr.slice(at)}`);
  const out: Selector[] = [];
  tree.iterate({
    enter(ref) {
      const node = ref.node;
      if (ref.type.isError) throw fail(ref.from, 'PromQL syntax error');
      if (ref.name === 'MatrixSelector' && node.firstChild?.name !== 'VectorSelector') throw fail(ref.from, 'a range on something other than a selector');
      if (ref.name === 'AggregateExpr' && node.lastChild?.name === 'AggregateModifier')
        throw fail(ref.from, 'write "sum by (...) (...)", not "sum(...) by (...)"');
      if (ref.name !== 'VectorSelector') return;
      const labels = node.getChild('LabelMatchers');
      const matchers: Matcher[] = [];
      for (let m = labels?.firstChild; m; m = m.nextSibling) {
        if (m.name !== 'UnquotedLabelMatcher' && m.name !== 'QuotedLabelMatcher') continue;
        const label = m.firstChild!.name === 'QuotedLabelName' ? unquote(text(m.firstChild)) : text(m.firstChild);
        matchers.push({ label, op: text(m.getChild('MatchOp')) as Matcher['op'], value: unquote(text(m.getChild('StringLiteral'))) });
      }
      const byName = matchers.find((m) => m.label === '__name__' && (m.op === '=' || m.op === '=~'));
      const metric = text(node.getChild('Identifier')) || unquote(text(labels?.getChild('QuotedLabelName') ?? null)) || (byName?.value ?? '');
      if (!metric) throw fail(ref.from, 'a selector without a metric name');
      const within: Enclosing[] = [];
      for (let up = node.parent; up; up = up.parent) {
        if (up.name === 'FunctionCall') within.unshift({ name: text(up.getChild('FunctionIdentifier')) });
        if (up.name !== 'AggregateExpr') continue;
        const modifier = up.getChild('AggregateModifier');
        const by = modifier?.getChild('By') && modifier.getChild('GroupingLabels');
        within.unshift({ name: text(up.getChild('AggregateOp')), ...(by && { by: by.getChildren('LabelName').map(text) }) });
      }
      const range = node.parent?.name === 'MatrixSelector' ? text(node.parent.getChild('DurationExpr')) : undefined;
      out.push({ metric, matchers, ...(range !== undefined && { range }), within });
    },
  });
  return out;
}

/** The metric names a selector matches: its name, or each of a
 * {__name__=~"prefix(a|b)suffix"} selector's alternatives. */
export function metricNames(s: Selector): string[] {
  const m = /^([\w:]*)\(([\w:|]+)\)([\w:]*)$/.exec(s.metric);
  return m ? m[2]!.split('|').map((alt) => `${m[1]}${alt}${m[3]}`) : [s.metric];
}

/** The selector as text, without its range (for /api/v1/series). */
export function selectorText(s: Selector): string {
  return `${s.metric}{${s.matchers.map((m) => `${m.label}${m.op}${JSON.stringify(m.value)}`).join(', ')}}`;
}

/** Grafana's interpolation of template variables in a Prometheus query; a
 * value of a multi-value or include-all variable is escaped for a regular
 * expression (inside a string literal), as Grafana does. Unknown variables
 * throw. */
export function interpolate(expr: string, values: Record<string, { value: string; regex: boolean }>): string {
  return expr.replace(VARIABLE, (whole, a?: string, b?: string, c?: string) => {
    const name = (a ?? b ?? c)!;
    const v = values[name];
    // Grafana leaves what names no variable as it is: label_replace's "$1"
    // reaches Prometheus; any other unknown name here is a mistake
    if (!v && /^\d+$/.test(name)) return whole;
    if (!v) throw new Error(`unknown variable ${whole}`);
    if (!v.regex || v.value === '.*') return v.value;
    return v.value.replace(/[\\^$*+?.()|{}[\]]/g, (ch) => `\\\\${ch}`);
  });
}
