// SPDX-License-Identifier: Apache-2.0
// Go text/template, read: actions split from text with {{- -}} trimming and
// comments dropped, pipelines tokenized and parsed, if/with/range/define
// nested into a tree. go-template.ts executes what this returns.

/** A Go integer: template literals such as 63, and what int64 returns. Numbers
 * read from YAML are float64 in Helm, and print like Go's %v (1e+06). */
export class GoInt {
  constructor(readonly value: bigint) {}
}

export interface Pipeline {
  vars: string[];
  /** `=` (assign) instead of `:=` (declare) */
  assign: boolean;
  cmds: Operand[][];
}

export type Operand =
  | { kind: 'lit'; value: unknown }
  | { kind: 'func'; name: string }
  | { kind: 'field'; base: 'dot' | 'var' | 'pipe'; varName?: string; pipe?: Pipeline; path: string[] }
  | { kind: 'pipe'; pipe: Pipeline };

export interface ControlNode {
  kind: 'if' | 'with' | 'range';
  pipe: Pipeline;
  body: Node[];
  orElse: Node[];
  where: string;
}

export type Node = { kind: 'text'; text: string } | { kind: 'action'; pipe: Pipeline; where: string } | ControlNode;

interface Item {
  text?: string;
  action?: string;
  where: string;
}

const SPACE = /\s/;

/** Splits a template into text and actions, trimming as {{- and -}} ask and
 * dropping comments. */
function lex(name: string, src: string): Item[] {
  const items: Item[] = [];
  let pos = 0;
  let trimNext = false;
  const lineAt = (i: number) => `${name}:${src.slice(0, i).split('\n').length}`;
  while (pos < src.length) {
    const open = src.indexOf('{{', pos);
    let text = src.slice(pos, open < 0 ? src.length : open);
    if (trimNext) text = text.replace(/^\s+/, '');
    if (open < 0) {
      items.push({ text, where: lineAt(pos) });
      break;
    }
    let i = open + 2;
    const trimLeft = src[i] === '-' && SPACE.test(src[i + 1] ?? '');
    if (trimLeft) {
      text = text.replace(/\s+$/, '');
      i += 2;
    }
    items.push({ text, where: lineAt(pos) });
    while (SPACE.test(src[i] ?? '') && trimLeft) i++;
    let end: number;
    let body: string | undefined;
    if (src.startsWith('/*', i)) {
      const close = src.indexOf('*/', i + 2);
      if (close < 0) throw new Error(`${lineAt(open)}: unclosed comment`);
      end = src.indexOf('}}', close + 2);
      if (
        end < 0 ||
        src
          .slice(close + 2, end)
          .trim()
          .replace(/^-$/, '') !== ''
      )
        throw new Error(`${lineAt(open)}: comment ends without }}`);
    } else {
      end = i;
      let quote = '';
      for (; end < src.length; end++) {
        const c = src[end]!;
        if (quote) {
          if (c === '\\' && quote !== '`') end++;
          else if (c === quote) quote = '';
        } else if (c === '"' || c === '`' || c === "'") quote = c;
        else if (src.startsWith('}}', end)) break;
      }
      if (end >= src.length) throw new Error(`${lineAt(open)}: unclosed action`);
      body = src.slice(i, end);
    }
    trimNext = src[end - 1] === '-' && SPACE.test(src[end - 2] ?? '');
    if (body !== undefined) {
      if (trimNext) body = body.slice(0, -1);
      items.push({ action: body.trim(), where: lineAt(open) });
    }
    pos = end + 2;
  }
  return items.filter((it) => it.action !== undefined || it.text !== '');
}

interface Token {
  t: string;
  kind: 'str' | 'num' | 'field' | 'var' | 'ident' | 'punct';
  value?: unknown;
  /** written right after the previous token (a field chain on a parenthesis) */
  glued: boolean;
}

function tokenize(action: string, where: string): Token[] {
  const out: Token[] = [];
  const re =
    /\s*(?:("(?:[^"\\]|\\.)*")|(`[^`]*`)|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|((?:\.[A-Za-z_]\w*)+|\.)|(\$\w*(?:\.[A-Za-z_]\w*)*)|([A-Za-z_]\w*)|(:=|[()|,=]))/y;
  let last = 0;
  while (last < action.length) {
    re.lastIndex = last;
    const m = re.exec(action);
    if (!m) throw new Error(`${where}: cannot read "${action.slice(last)}"`);
    const glued = m[0][0] !== undefined && !SPACE.test(m[0][0]) && last > 0;
    last = re.lastIndex;
    if (m[1]) out.push({ t: m[1], kind: 'str', value: JSON.parse(m[1]), glued });
    else if (m[2]) out.push({ t: m[2], kind: 'str', value: m[2].slice(1, -1), glued });
    else if (m[3]) out.push({ t: m[3], kind: 'num', value: /[.eE]/.test(m[3]) ? Number(m[3]) : new GoInt(BigInt(m[3])), glued });
    else if (m[4]) out.push({ t: m[4], kind: 'field', glued });
    else if (m[5]) out.push({ t: m[5], kind: 'var', glued });
    else if (m[6]) out.push({ t: m[6], kind: 'ident', glued });
    else if (m[7]) out.push({ t: m[7], kind: 'punct', glued });
    if (action.slice(last).trim() === '') break;
  }
  return out;
}

class PipelineParser {
  private i = 0;
  constructor(
    private readonly toks: Token[],
    private readonly where: string,
  ) {}

  parseAll(): Pipeline {
    const p = this.pipeline();
    if (this.i < this.toks.length) throw new Error(`${this.where}: unexpected "${this.toks[this.i]!.t}"`);
    return p;
  }

  private pipeline(): Pipeline {
    const vars: string[] = [];
    let assign = false;
    // $x := ..., $k, $v := ..., $x = ...
    let j = this.i;
    const names: string[] = [];
    while (this.toks[j]?.kind === 'var' && !this.toks[j]!.t.includes('.')) {
      names.push(this.toks[j]!.t);
      j++;
      if (this.toks[j]?.t === ',') j++;
      else break;
    }
    if (names.length && (this.toks[j]?.t === ':=' || this.toks[j]?.t === '=')) {
      vars.push(...names);
      assign = this.toks[j]!.t === '=';
      this.i = j + 1;
    }
    const cmds: Operand[][] = [this.command()];
    while (this.toks[this.i]?.t === '|') {
      this.i++;
      cmds.push(this.command());
    }
    return { vars, assign, cmds };
  }

  private command(): Operand[] {
    const ops: Operand[] = [];
    for (;;) {
      const tok = this.toks[this.i];
      if (!tok || tok.t === '|' || tok.t === ')') break;
      ops.push(this.operand());
    }
    if (!ops.length) throw new Error(`${this.where}: empty command`);
    return ops;
  }

  private operand(): Operand {
    const tok = this.toks[this.i++]!;
    switch (tok.kind) {
      case 'str':
      case 'num':
        return { kind: 'lit', value: tok.value };
      case 'field':
        return { kind: 'field', base: 'dot', path: tok.t === '.' ? [] : tok.t.slice(1).split('.') };
      case 'var': {
        const [varName, ...path] = tok.t.split('.');
        return { kind: 'field', base: 'var', varName, path };
      }
      case 'ident':
        if (tok.t === 'true' || tok.t === 'false') return { kind: 'lit', value: tok.t === 'true' };
        if (tok.t === 'nil') return { kind: 'lit', value: null };
        return { kind: 'func', name: tok.t };
      default:
        if (tok.t !== '(') throw new Error(`${this.where}: unexpected "${tok.t}"`);
    }
    const pipe = this.pipeline();
    if (this.toks[this.i++]?.t !== ')') throw new Error(`${this.where}: missing )`);
    const next = this.toks[this.i];
    if (next?.kind === 'field' && next.glued && next.t !== '.') {
      this.i++;
      return { kind: 'field', base: 'pipe', pipe, path: next.t.slice(1).split('.') };
    }
    return { kind: 'pipe', pipe };
  }
}

function parsePipeline(text: string, where: string): Pipeline {
  return new PipelineParser(tokenize(text, where), where).parseAll();
}

/** Parses items into nodes up to an {{end}} or {{else}} (returned as the stop). */
function parseList(items: Item[], state: { i: number }, defines: Map<string, Node[]>): { nodes: Node[]; stop?: Item } {
  const nodes: Node[] = [];
  while (state.i < items.length) {
    const it = items[state.i++]!;
    if (it.action === undefined) {
      nodes.push({ kind: 'text', text: it.text! });
      continue;
    }
    const m = /^(\w+)\b\s*([\s\S]*)$/.exec(it.action);
    const word = m?.[1];
    if (word === 'end' || word === 'else') return { nodes, stop: it };
    if (word === 'if' || word === 'with' || word === 'range') {
      nodes.push(parseControl(word, m![2]!, it.where, items, state, defines));
    } else if (word === 'define') {
      const name = JSON.parse(m![2]!.trim()) as string;
      const { nodes: body, stop } = parseList(items, state, defines);
      if (stop?.action !== 'end') throw new Error(`${it.where}: define "${name}" without end`);
      defines.set(name, body);
    } else if (word === 'template' || word === 'block' || word === 'break' || word === 'continue') {
      throw new Error(`${it.where}: {{${word}}} is outside the subset this engine (and the chart) use`);
    } else {
      nodes.push({ kind: 'action', pipe: parsePipeline(it.action, it.where), where: it.where });
    }
  }
  return { nodes };
}

function parseControl(word: 'if' | 'with' | 'range', rest: string, where: string, items: Item[], state: { i: number }, defines: Map<string, Node[]>): Node {
  const pipe = parsePipeline(rest, where);
  const { nodes: body, stop } = parseList(items, state, defines);
  if (!stop) throw new Error(`${where}: ${word} without end`);
  let orElse: Node[] = [];
  if (stop.action!.startsWith('else')) {
    const elseRest = stop.action!.slice(4).trim();
    const chained = /^(if|with)\b\s*([\s\S]*)$/.exec(elseRest);
    if (chained) {
      // {{else if x}} is {{else}}{{if x}}...{{end}}, the two sharing one {{end}}
      orElse = [parseControl(chained[1] as 'if' | 'with', chained[2]!, stop.where, items, state, defines)];
      return { kind: word, pipe, body, orElse, where };
    }
    if (elseRest) throw new Error(`${stop.where}: cannot read "else ${elseRest}"`);
    const tail = parseList(items, state, defines);
    if (tail.stop?.action !== 'end') throw new Error(`${where}: ${word} ... else without end`);
    orElse = tail.nodes;
  }
  return { kind: word, pipe, body, orElse, where };
}

/** Parses one template file into nodes; its {{define}}s go into defines. */
export function parseTemplate(name: string, src: string, defines: Map<string, Node[]>): Node[] {
  const items = lex(name, src);
  const { nodes, stop } = parseList(items, { i: 0 }, defines);
  if (stop) throw new Error(`${stop.where}: unexpected {{${stop.action}}}`);
  return nodes;
}
