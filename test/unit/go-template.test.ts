// SPDX-License-Identifier: Apache-2.0
// The Go-template engine the chart test renders with (test/helpers), held to
// what Go's text/template documentation and fmt say, where a difference would
// make a rendered chart differ from Helm's.
import assert from 'node:assert/strict';
import { GoStruct, TemplateSet, goFloat } from '../helpers/go-template';
import { loadChart, renderChart } from '../helpers/helm-chart';
import { CHART_DIR } from '../helpers/chart-check';

function run(src: string, data: unknown = {}, funcs: ConstructorParameters<typeof TemplateSet>[0] = {}): string {
  const t = new TemplateSet(funcs);
  t.add('t', src);
  return t.execute('t', data);
}

describe('Go template engine', function () {
  it("prints float64 as fmt's %v does: exponents from 1e+06 and below 1e-04", function () {
    const cases: [number, string][] = [
      [600, '600'],
      [123456, '123456'],
      [1e6, '1e+06'],
      [4194304, '4.194304e+06'],
      [0.25, '0.25'],
      [0.0001, '0.0001'],
      [0.00001, '1e-05'],
      [1.5e300, '1.5e+300'],
      [-2.5e-7, '-2.5e-07'],
    ];
    assert.deepEqual(
      cases.map(([v]) => goFloat(v)),
      cases.map(([, s]) => s),
    );
  });

  it('trims and drops comments as the documentation shows', function () {
    assert.equal(run('{{23 -}} < {{- 45}}'), '23<45');
    assert.equal(run('a \n {{- /* a comment */ -}} \n b'), 'ab');
    assert.equal(run('{{-3}}'), '-3', '{{- needs a space after it to trim');
  });

  it('takes if, else if and else; with; range over lists and maps in key order', function () {
    const tpl = '{{if .a}}A{{else if .b}}B{{else}}C{{end}}';
    assert.deepEqual([run(tpl, { a: 1 }), run(tpl, { b: 'x' }), run(tpl, {})], ['A', 'B', 'C']);
    assert.equal(run('{{with .x}}{{.}}{{else}}none{{end}}', { x: '' }), 'none');
    assert.equal(run('{{range $k, $v := .m}}{{$k}}={{$v}};{{end}}', { m: { b: 2, a: 1, c: 3 } }), 'a=1;b=2;c=3;');
    assert.equal(run('{{range $i, $v := .l}}{{$i}}{{$v}}{{end}}{{range .e}}x{{else}}empty{{end}}', { l: ['a', 'b'], e: [] }), '0a1bempty');
  });

  it('returns the deciding operand from and/or, and scopes variables to their block', function () {
    assert.equal(run('{{and 1 0 2}}|{{and 1 2}}|{{or 0 "" "x"}}|{{or 0 ""}}'), '0|2|x|');
    assert.equal(run('{{$x := "outer"}}{{if true}}{{$x := "inner"}}{{$x}}{{end}}{{$x}}'), 'innerouter');
    assert.equal(run('{{$x := "a"}}{{if true}}{{$x = "b"}}{{end}}{{$x}}'), 'b');
  });

  it('refuses what Go would print as debug output or fail on', function () {
    assert.throws(() => run('{{.m}}', { m: { a: 1 } }), /printing a map/);
    assert.throws(() => run('{{.a.b}}', {}), /nil pointer evaluating \.b/);
    assert.throws(() => run('{{.Nope}}', new GoStruct({ Yes: 1 })), /can't evaluate field Nope/);
    assert.throws(() => run('{{nofunc 1}}'), /function "nofunc" not defined/);
  });

  it('renders the chart with Helm functions: printf %d wants int64, as Go does', function () {
    const chart = loadChart(CHART_DIR);
    const bad = new Map(chart.templates);
    bad.set('templates/bad.yaml', 'x: {{ printf "%d" .Values.exporter.listen.port }}');
    assert.throws(() => renderChart({ ...chart, templates: bad }, { name: 'r', namespace: 'n' }), /printf %d of a float64: pipe it through int64/);
  });
});
