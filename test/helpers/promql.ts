// SPDX-License-Identifier: Apache-2.0
// Just enough PromQL reading to judge how a dashboard uses a metric: each
// vector selector with its label matchers, whether it has a range, and the
// calls and aggregations around it (innermost last). Prometheus itself
// judges whether an expression parses; this only has to see its shape, and
// it refuses what it does not understand rather than guess.

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
  metric: string;
  matchers: Matcher[];
  range?: string;
  /** calls around the selector, outermost first */
  within: Enclosing[];
}

type Token = { kind: 'ident' | 'string' | 'number' | 'range' | 'punct'; text: string };

const AGGREGATIONS = new Set(['sum', 'min', 'max', 'avg', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values', 'group']);
const LABEL_LISTS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'inf', 'nan']);

function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  const re =
    /\s+|("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)|(\[[^\]]*\])|([a-zA-Z_:][a-zA-Z0-9_:]*)|(\d+(?:\.\d+)?(?:e[+-]?\d+)?)|(=~|!~|!=|==|>=|<=|[-+*/%^(){},=<>])/y;
  for (let at = 0; at < expr.length;) {
    re.lastIndex = at;
    const m = re.exec(expr);
    if (!m) throw new Error(`cannot read PromQL at "${expr.slice(at, at + 20)}"`);
    at = re.lastIndex;
    if (m[1]) tokens.push({ kind: 'string', text: m[1] });
    else if (m[2]) tokens.push({ kind: 'range', text: m[2].slice(1, -1) });
    else if (m[3]) tokens.push({ kind: 'ident', text: m[3] });
    else if (m[4]) tokens.push({ kind: 'number', text: m[4] });
    else if (m[5]) tokens.push({ kind: 'punct', text: m[5] });
  }
  return tokens;
}

function unquote(s: string): string {
  return s[0] === '`' ? s.slice(1, -1) : s.slice(1, -1).replace(/\\(.)/g, '$1');
}

/** The vector selectors of expr, each with what encloses it. */
export function selectors(expr: string): Selector[] {
  const t = tokenize(expr);
  const out: Selector[] = [];
  const stack: (Enclosing | null)[] = [];
  const within = () => stack.filter((e): e is Enclosing => e !== null).map((e) => ({ ...e }));
  const labelList = (i: number): [string[], number] => {
    if (t[i]?.text !== '(') throw new Error(`expected ( after ${t[i - 1]?.text} in ${expr}`);
    const labels: string[] = [];
    for (i++; t[i] && t[i]!.text !== ')'; i++) if (t[i]!.kind === 'ident') labels.push(t[i]!.text);
    return [labels, i + 1];
  };
  for (let i = 0; i < t.length;) {
    const tok = t[i]!;
    const next = t[i + 1];
    if (tok.kind === 'ident' && AGGREGATIONS.has(tok.text) && (next?.text === 'by' || next?.text === 'without')) {
      const [labels, j] = labelList(i + 2);
      if (t[j]?.text !== '(') throw new Error(`expected ( after ${tok.text} ${next.text} (...) in ${expr}`);
      stack.push({ name: tok.text, by: next.text === 'by' ? labels : undefined });
      i = j + 1;
    } else if (tok.kind === 'ident' && LABEL_LISTS.has(tok.text)) {
      // after an aggregation's argument (`sum(x) by (l)`) or a binary operator
      if (t[i - 1]?.text === ')' && (tok.text === 'by' || tok.text === 'without'))
        throw new Error(`write "sum by (...) (...)", not "sum(...) by (...)": ${expr}`);
      i = labelList(i + 1)[1];
    } else if (tok.kind === 'ident' && next?.text === '(') {
      stack.push({ name: tok.text });
      i += 2;
    } else if (tok.text === '(') {
      stack.push(null);
      i++;
    } else if (tok.text === ')') {
      if (!stack.length) throw new Error(`unbalanced ) in ${expr}`);
      stack.pop();
      i++;
    } else if (tok.kind === 'ident' && !KEYWORDS.has(tok.text) && tok.text !== 'offset') {
      const sel: Selector = { metric: tok.text, matchers: [], within: within() };
      i++;
      if (t[i]?.text === '{') {
        for (i++; t[i]?.text !== '}';) {
          const [label, op, value] = [t[i], t[i + 1], t[i + 2]];
          if (label?.kind !== 'ident' || !['=', '!=', '=~', '!~'].includes(op?.text ?? '') || value?.kind !== 'string')
            throw new Error(`cannot read the matchers of ${tok.text} in ${expr}`);
          sel.matchers.push({ label: label.text, op: op!.text as Matcher['op'], value: unquote(value.text) });
          i += 3;
          if (t[i]?.text === ',') i++;
        }
        i++;
      }
      if (t[i]?.kind === 'range') sel.range = t[i++]!.text;
      out.push(sel);
    } else if (tok.text === '{') {
      throw new Error(`a selector without a metric name: ${expr}`);
    } else if (tok.kind === 'range') {
      throw new Error(`a range or subquery after something other than a selector: ${expr}`);
    } else {
      if (tok.text === 'offset') i++;
      i++;
    }
  }
  if (stack.length) throw new Error(`unbalanced ( in ${expr}`);
  return out;
}

/** The selector as text, without its range (for /api/v1/series). */
export function selectorText(s: Selector): string {
  return `${s.metric}{${s.matchers.map((m) => `${m.label}${m.op}${JSON.stringify(m.value)}`).join(', ')}}`;
}

/** Grafana's interpolation of template variables in a Prometheus query:
 * `$name`, `${name}` and `[[name]]`; a value of a multi-value or include-all
 * variable is escaped for a regular expression (inside a string literal),
 * as Grafana does. Unknown variables throw. */
export function interpolate(expr: string, values: Record<string, { value: string; regex: boolean }>): string {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g, (whole, a?: string, b?: string, c?: string) => {
    const name = (a ?? b ?? c)!;
    const v = values[name];
    if (!v) throw new Error(`unknown variable ${whole}`);
    if (!v.regex || v.value === '.*') return v.value;
    return v.value.replace(/[\\^$*+?.()|{}[\]]/g, (ch) => `\\\\${ch}`);
  });
}
