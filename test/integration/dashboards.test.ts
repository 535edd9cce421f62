// SPDX-License-Identifier: Apache-2.0
// The bundled Grafana dashboards against the real thing: a Prometheus server
// (the Debian package) scrapes the exporter, running every probe, while
// traffic goes through each of them; every query variable and every panel
// expression, with its variables filled in as Grafana would, is sent to
// Prometheus and must return series. Before that, the dashboards' shape:
// plain stable JSON, one datasource variable used everywhere, the
// job/namespace/pod/instance filters on every selector, and metrics used as
// their types allow (from the live /metrics): histograms only as heatmaps and
// quantiles, counters only through rate() or increase(). And promtool has
// nothing to say about the live /metrics.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { runClient, spawnEchoAgent, startClient, startEchoServer, startServer, streamResults } from '../helpers/agent';
import { TestCgroup } from '../helpers/cgroup';
import { RunningExporter } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { OtlpReceiver } from '../helpers/otlp-receiver';
import { requireRoot } from '../helpers/privileges';
import { RunningPrometheus } from '../helpers/prometheus';
import { interpolate, selectors, selectorText, type Selector } from '../helpers/promql';
import { buildSidecarProxy, startSidecarProxy } from '../helpers/sidecar-proxy';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const DASHBOARDS = path.join(ROOT, 'dashboards');
const FILES = ['exporter-health.json', 'netstack.json', 'sidecar.json', 'sock-redirect.json', 'tcp-connections.json'];
const DS = { type: 'prometheus', uid: '${datasource}' };
/** the variables every dashboard filters by, in the order they narrow */
const COMMON = ['job', 'namespace', 'pod', 'instance'];
const PANEL_TYPES = ['heatmap', 'row', 'stat', 'table', 'timeseries'];
/** Grafana's own variables, as Grafana would fill them for the last hour at 1 s scrapes */
const BUILTINS = { __rate_interval: '30s', __interval: '5s', __range: '1h' };
/** series Prometheus adds for every target */
const PROMETHEUS_SERIES: Record<string, string> = { up: 'gauge', scrape_duration_seconds: 'gauge', scrape_samples_scraped: 'gauge' };
/** metrics the exporter declares (# TYPE) with no series until something goes wrong */
const EMPTY_WHILE_HEALTHY = ['bpfnet_scrape_errors_total'];
const RATES = ['rate', 'increase'];
const JOB = 'bpfnet-exporter';
const NAMESPACE = 'bpfnet-test';
const POD = `bpfnet-exporter-${process.pid}`;

interface Dashboard {
  file: string;
  text: string;
  json: any;
}

interface Query {
  file: string;
  panel: string;
  panelType: string;
  format?: string;
  expr: string;
}

interface Variable {
  name: string;
  type: string;
  query: string;
  raw: any;
}

function loadDashboards(): Dashboard[] {
  return fs
    .readdirSync(DASHBOARDS)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => {
      const text = fs.readFileSync(path.join(DASHBOARDS, file), 'utf8');
      return { file, text, json: JSON.parse(text) };
    });
}

/** Every panel, rows' panels included (a collapsed row keeps them inside). */
function panelsOf(d: Dashboard): any[] {
  return (d.json.panels as any[]).flatMap((p) => [p, ...(p.panels ?? [])]);
}

function queriesOf(d: Dashboard): Query[] {
  return panelsOf(d).flatMap((p) => (p.targets ?? []).map((t: any) => ({ file: d.file, panel: p.title, panelType: p.type, format: t.format, expr: t.expr })));
}

function variablesOf(d: Dashboard): Variable[] {
  return (d.json.templating.list as any[]).map((v) => ({
    name: v.name,
    type: v.type,
    query: typeof v.query === 'string' ? v.query : v.query?.query,
    raw: v,
  }));
}

/** label_values(selector, label): what a query variable asks. */
function labelValuesQuery(q: string): { match: string; label: string } {
  const m = /^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(q);
  if (!m) throw new Error(`not label_values(selector, label): ${q}`);
  return { match: m[1]!, label: m[2]! };
}

const where = (q: Query) => `${q.file} › ${q.panel} › ${q.expr}`;

/** What the filters of every selector must be: one `=~"$name"` matcher for
 * each variable that narrows it, nothing else on those labels. */
function filterProblems(s: Selector, names: string[]): string[] {
  return names.flatMap((name) => {
    const on = s.matchers.filter((m) => m.label === name);
    return on.length === 1 && on[0]!.op === '=~' && on[0]!.value === `$${name}` ? [] : [`${s.metric} is not filtered by ${name}=~"$${name}"`];
  });
}

const dashboards = loadDashboards();
const allQueries = dashboards.flatMap(queriesOf);
const allVariables = dashboards.flatMap((d) => variablesOf(d).filter((v) => v.type === 'query'));

describe('dashboards', function () {
  it(`are the five areas' files, pretty-printed, with stable uids and no ids`, function () {
    assert.deepEqual(
      dashboards.map((d) => d.file),
      FILES,
    );
    for (const d of dashboards) {
      assert.equal(d.text, JSON.stringify(d.json, null, 2) + '\n', `${d.file} is not 2-space pretty-printed JSON with a trailing newline`);
      assert.equal(d.json.id, undefined, `${d.file} has an id`);
      assert.equal(d.json.uid, `bpfnet-${d.file.replace(/\.json$/, '')}`, d.file);
      assert.equal(d.json.schemaVersion, 39, d.file);
      assert.ok(d.json.tags.includes('bpfnet-exporter'), `${d.file} lacks the tag the dashboards' links use`);
    }
    assert.equal(new Set(dashboards.map((d) => d.json.title)).size, dashboards.length, 'titles are unique');
  });

  it('have a datasource variable, the job/namespace/pod/instance variables, and nothing hard-coded', function () {
    const problems: string[] = [];
    for (const d of dashboards) {
      const vars = variablesOf(d);
      assert.deepEqual([vars[0]!.type, vars[0]!.name, vars[0]!.raw.query], ['datasource', 'datasource', 'prometheus'], d.file);
      assert.deepEqual(
        vars.slice(1, 5).map((v) => v.name),
        COMMON,
        d.file,
      );
      const names = vars.map((v) => v.name);
      for (const [i, v] of vars.entries()) {
        if (v.type === 'datasource') continue;
        const r = v.raw;
        if (v.type !== 'query') problems.push(`${d.file}: variable ${v.name} is a ${v.type}`);
        if (JSON.stringify(r.datasource) !== JSON.stringify(DS)) problems.push(`${d.file}: variable ${v.name} does not query \${datasource}`);
        if (!(r.includeAll === true && r.multi === true && r.allValue === '.*'))
          problems.push(`${d.file}: variable ${v.name} is not multi-value with All as .*`);
        if (r.definition !== v.query) problems.push(`${d.file}: variable ${v.name}: definition and query differ`);
        // each narrows by the common variables before it (all of them, for the others)
        const before = COMMON.includes(v.name) ? COMMON.slice(0, COMMON.indexOf(v.name)) : COMMON;
        try {
          const [s, ...more] = selectors(labelValuesQuery(v.query).match);
          if (more.length) problems.push(`${d.file}: variable ${v.name} has more than one selector`);
          problems.push(...filterProblems(s!, before).map((p) => `${d.file}: variable ${v.name}: ${p}`));
          for (const m of s!.matchers)
            if (m.value.startsWith('$') && !names.slice(0, i).includes(m.value.slice(1)))
              problems.push(`${d.file}: variable ${v.name} uses ${m.value}, not defined before it`);
        } catch (err) {
          problems.push(`${d.file}: variable ${v.name}: ${(err as Error).message}`);
        }
      }
    }
    assert.deepEqual(problems, []);
  });

  it(`have panels of known types, all on \${datasource}, laid out without overlap, every selector filtered by the variables`, function () {
    const problems: string[] = [];
    for (const d of dashboards) {
      const names = new Set(variablesOf(d).map((v) => v.name));
      const ids = new Set<number>();
      const cells = new Map<string, string>();
      for (const p of panelsOf(d)) {
        const at = `${d.file} › ${p.title}`;
        if (!PANEL_TYPES.includes(p.type)) problems.push(`${at}: panel type ${p.type}`);
        if (ids.has(p.id)) problems.push(`${at}: id ${p.id} used twice`);
        ids.add(p.id);
        const { x, y, w, h } = p.gridPos;
        if (x < 0 || w < 1 || x + w > 24) problems.push(`${at}: gridPos beyond 24 columns`);
        const overlapped = new Set<string>();
        for (let i = x; i < x + w; i++) {
          for (let j = y; j < y + h; j++) {
            const other = cells.get(`${i},${j}`);
            if (other) overlapped.add(other);
            cells.set(`${i},${j}`, p.title);
          }
        }
        for (const other of overlapped) problems.push(`${at}: overlaps ${other}`);
        if (p.type === 'row') continue;
        if (!p.description) problems.push(`${at}: no description`);
        if (JSON.stringify(p.datasource) !== JSON.stringify(DS)) problems.push(`${at}: datasource is not \${datasource}`);
        if (!p.targets?.length) problems.push(`${at}: no queries`);
        for (const t of p.targets ?? [])
          if (JSON.stringify(t.datasource) !== JSON.stringify(DS)) problems.push(`${at} › ${t.refId}: datasource is not \${datasource}`);
      }
      for (const q of queriesOf(d)) {
        for (const [, name] of q.expr.matchAll(/\$\{?(\w+)/g))
          if (!names.has(name!) && !(name! in BUILTINS)) problems.push(`${where(q)}: $${name} is not a variable`);
        try {
          for (const s of selectors(q.expr)) {
            problems.push(...filterProblems(s, COMMON).map((p) => `${where(q)}: ${p}`));
            for (const m of s.matchers)
              if (m.value.includes('$') && !(m.op === '=~' && m.value === `$${m.label}`)) problems.push(`${where(q)}: matcher ${m.label}${m.op}"${m.value}"`);
            if (s.range && s.range !== '$__rate_interval' && s.range !== '$__range') problems.push(`${where(q)}: a fixed range [${s.range}]`);
          }
        } catch (err) {
          problems.push(`${where(q)}: ${(err as Error).message}`);
        }
      }
    }
    assert.deepEqual(problems, []);
  });
});

/** Traffic through every probe, inside ns (and the redirect's cgroup). */
async function makeTraffic(ns: Netns, cg: TestCgroup): Promise<void> {
  const host = '127.0.0.1';
  const server = await startServer(ns, { host, port: 0, down: 4096 });
  try {
    // established, accepted, closed; the server answers after the client's
    // FIN, so the answer's segments take stack_to_read
    const normal = await runClient(ns, { host, port: server.port, connections: Array(5).fill({ up: 1000 }) });
    assert.deepEqual(
      normal.results.map((r) => r.received),
      Array(5).fill(4096),
    );
    // a closed port: refused, a reset each way, a no_socket drop
    const refused = await runClient(ns, { host, port: 1, connections: [{ up: 1 }] });
    assert.equal(refused.results[0]!.error, 'ECONNREFUSED');
    // a connection the client resets
    await runClient(ns, { host, port: server.port, connections: [{ up: 1000, ending: 'reset' }] });
    // the first SYN dropped by nftables (netfilter_drop): the kernel retransmits it
    ns.nft(`table inet bpfnet_dashboards {
      chain input { type filter hook input priority 0; tcp dport ${server.port} counter drop; }
    }`);
    const retransmitting = startClient(ns, { host, port: server.port, connections: [{ up: 1000 }] });
    try {
      await ns.waitForPackets('inet bpfnet_dashboards', 1);
    } finally {
      ns.run('nft', 'delete', 'table', 'inet', 'bpfnet_dashboards');
    }
    await retransmitting.waitFor('done', 60_000);
    assert.equal(retransmitting.all('result')[0]!.received, 4096);
    // from the redirect's cgroup to a server outside it: no peer to pair
    await runClient(ns, { host, port: server.port, connections: [{ up: 1000 }] }, cg);
  } finally {
    await server.stop();
  }

  // two processes of the cgroup: redirected
  const echo = await startEchoServer(ns, { role: 'echo', host, port: 0 }, cg);
  try {
    const streams = await streamResults(spawnEchoAgent(ns, { role: 'stream', host, port: echo.port, connections: 2, bytes: 100_000 }, cg));
    assert.deepEqual(
      streams.map((r) => [r.sent, r.received]),
      [
        [100_000, 100_000],
        [100_000, 100_000],
      ],
    );
  } finally {
    await echo.stop();
  }

  // client -> sidecar proxy -> application
  const app = await startServer(ns, { host, port: 0, down: 300 });
  const proxy = await startSidecarProxy(ns, { mode: 'loop', delayMs: 5, upstreamPort: app.port });
  try {
    const { results } = await runClient(ns, { host, port: proxy.port, connections: Array(3).fill({ up: 100 }) });
    assert.deepEqual(
      results.map((r) => r.received),
      [300, 300, 300],
    );
  } finally {
    proxy.stop();
    await app.stop();
  }
}

/** Metric types as the live /metrics declares them (# TYPE lines). */
function declaredTypes(text: string): Map<string, string> {
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
}

/** What a series name is: a counter, a gauge, a histogram's bucket, or one of
 * its _sum/_count (counters too); undefined if the exporter does not serve it. */
function kindOf(metric: string, types: Map<string, string>): 'counter' | 'gauge' | 'bucket' | undefined {
  const t = PROMETHEUS_SERIES[metric] ?? types.get(metric);
  if (t === 'counter' || t === 'gauge') return t;
  const m = /^(.+)_(bucket|sum|count)$/.exec(metric);
  if (m && types.get(m[1]!) === 'histogram') return m[2] === 'bucket' ? 'bucket' : 'counter';
  return undefined;
}

/** How a query uses each of its selectors, judged by the selector's kind. */
function usageProblems(q: Query, types: Map<string, string>): string[] {
  const problems: string[] = [];
  const heatmap = q.panelType === 'heatmap';
  if (heatmap !== (q.format === 'heatmap')) problems.push(heatmap ? 'a heatmap target not in heatmap format' : 'heatmap format outside a heatmap panel');
  for (const s of selectors(q.expr)) {
    const kind = kindOf(s.metric, types);
    const calls = s.within.map((e) => e.name);
    const inner = calls.at(-1);
    const throughRate = s.range !== undefined && RATES.includes(inner ?? '');
    if (kind === undefined) problems.push(`${s.metric} is not a metric the exporter serves`);
    else if (kind === 'gauge' && (s.range !== undefined || RATES.includes(inner ?? ''))) problems.push(`gauge ${s.metric} is not used as it is`);
    else if (kind === 'counter' && !throughRate) problems.push(`counter ${s.metric} not through rate() or increase()`);
    else if (kind === 'bucket') {
      const sum = s.within.at(-2);
      const byLe = throughRate && sum?.name === 'sum' && (sum.by ?? []).includes('le');
      if (heatmap ? !(byLe && s.within.length === 2 && sum!.by!.length === 1) : !(byLe && calls.at(-3) === 'histogram_quantile')) {
        problems.push(`histogram ${s.metric} neither a heatmap's sum by (le) (rate(...)) nor histogram_quantile(q, sum by (le, ...) (rate(...)))`);
      }
    }
    if (heatmap && kind !== 'bucket') problems.push(`${s.metric} in a heatmap`);
  }
  return problems;
}

describe('dashboards on a real Prometheus scraping the exporter', function () {
  this.timeout(180_000);
  let ns: Netns;
  let cg: TestCgroup;
  let receiver: OtlpReceiver;
  let exporter: RunningExporter;
  let prom: RunningPrometheus;
  let instance: string;
  let metricsText: string;
  /** each dashboard's variables, as its query variables found them */
  const chosen = new Map<string, Record<string, { value: string; regex: boolean }>>();

  before(async function () {
    requireRoot();
    buildSidecarProxy();
    ns = createNetns('dashboards');
    cg = new TestCgroup('dashboards');
    receiver = await new OtlpReceiver().start();
    exporter = await new RunningExporter(
      [
        '--probes',
        'connect,accept,close,netstack',
        '--netns',
        ns.path,
        '--redirect',
        '--redirect-cgroup',
        cg.path,
        '--enable-bpf-stats',
        '--sidecar-comm',
        'sidecar-proxy',
        '--otlp-endpoint',
        receiver.endpoint,
      ],
      { OTEL_BSP_SCHEDULE_DELAY: '100' },
    ).ready();
    instance = new URL(await exporter.url).host;
    prom = await RunningPrometheus.start({ job: JOB, target: instance, labels: { namespace: NAMESPACE, pod: POD } });

    await makeTraffic(ns, cg);

    // the exporter has counted it all (spans sent, sockets closed) ...
    let closes = -1;
    const m = await exporter.settle((x) => {
      const settled =
        x.sum('bpfnet_spans_exported_total') > 0 && x.sum('bpfnet_sidecar_upstream_connect_seconds_count') === 3 && x.sum('bpfnet_tcp_closes_total') === closes;
      closes = x.sum('bpfnet_tcp_closes_total');
      return settled;
    }, 20_000);
    assert.ok(m.sum('bpfnet_spans_exported_total') > 0, 'spans were exported');
    // ... Prometheus has scraped that, and twice more, so that every series has a rate
    const self = `job="${JOB}", instance="${instance}"`;
    await prom.waitFor(`sum(bpfnet_tcp_closes_total{${self}})`, (v) => v === closes, `${closes} closes scraped`);
    const scrapes = await prom.value(`count_over_time(up{${self}}[1h])`);
    await prom.waitFor(`count_over_time(up{${self}}[1h])`, (v) => v >= scrapes + 2, 'two more scrapes');
    metricsText = (await exporter.metricsText()).body;
  });

  after(async function () {
    await prom?.stop();
    await exporter?.stop();
    await receiver?.stop();
    await ns?.destroy();
    await cg?.destroy();
  });

  it('use every metric the exporter serves, each as its type allows: counters through rate() or increase(), histograms as heatmaps and quantiles, gauges as they are', function () {
    const types = declaredTypes(metricsText);
    assert.ok(types.size >= 30, `only ${types.size} metrics declared`);
    const problems = allQueries.flatMap((q) => {
      try {
        return usageProblems(q, types).map((p) => `${where(q)}: ${p}`);
      } catch (err) {
        return [`${where(q)}: ${(err as Error).message}`];
      }
    });
    assert.deepEqual(problems, []);
    // a histogram is shown by its buckets, sum or count
    const family = (metric: string) => (types.has(metric) ? metric : metric.replace(/_(bucket|sum|count)$/, ''));
    const shown = new Set(allQueries.flatMap((q) => selectors(q.expr).map((s) => family(s.metric))));
    assert.deepEqual(
      [...types.keys()].filter((name) => !shown.has(name)),
      [],
      'metrics on no dashboard',
    );
  });

  it(`have query variables (${allVariables.length}) that find their values in Prometheus: the scrape's job, namespace, pod and instance`, async function () {
    const expected: Record<string, string> = { job: JOB, namespace: NAMESPACE, pod: POD, instance };
    const problems: string[] = [];
    for (const d of dashboards) {
      const values: Record<string, { value: string; regex: boolean }> = Object.fromEntries(
        Object.entries(BUILTINS).map(([k, v]) => [k, { value: v, regex: false }]),
      );
      for (const v of variablesOf(d).filter((x) => x.type === 'query')) {
        const { match, label } = labelValuesQuery(interpolate(v.query, values));
        const r = await prom.labelValues(label, match);
        if (!r.ok) problems.push(`${d.file} › variable ${v.name} › ${v.query}: ${r.error}`);
        else if (COMMON.includes(v.name) ? JSON.stringify(r.data) !== JSON.stringify([expected[v.name]]) : !r.data.length) {
          problems.push(`${d.file} › variable ${v.name} › ${v.query}: found ${JSON.stringify(r.data)}`);
        }
        // a common variable as the user picks this exporter; the others All
        values[v.name] = { value: COMMON.includes(v.name) && r.ok && r.data.length ? r.data[0]! : '.*', regex: true };
      }
      chosen.set(d.file, values);
    }
    assert.deepEqual(problems, []);
  });

  it(`have panel expressions (${allQueries.length}) that Prometheus evaluates to series, and selectors that each match series`, async function () {
    assert.equal(chosen.size, dashboards.length, 'the variables were found first');
    const problems: string[] = [];
    let empty = 0;
    for (const q of allQueries) {
      let expr: string;
      try {
        expr = interpolate(q.expr, chosen.get(q.file)!);
      } catch (err) {
        problems.push(`${where(q)}: ${(err as Error).message}`);
        continue;
      }
      const sels = selectors(expr);
      const expectedEmpty = sels.every((s) => EMPTY_WHILE_HEALTHY.includes(s.metric));
      const r = await prom.query(expr);
      if (!r.ok) problems.push(`${where(q)}: ${r.error}`);
      else if (r.data.result.length === 0 && !expectedEmpty) problems.push(`${where(q)}: no series`);
      else if (r.data.result.length === 0) empty++;
      for (const s of sels.filter((x) => !EMPTY_WHILE_HEALTHY.includes(x.metric))) {
        const found = await prom.series(selectorText(s));
        if (!found.ok || found.data.length === 0) problems.push(`${where(q)}: ${selectorText(s)} matches ${found.ok ? 'no series' : found.error}`);
      }
    }
    assert.deepEqual(problems, []);
    // what has no series while all is well is still served as what the dashboards take it for
    const types = declaredTypes(metricsText);
    for (const name of EMPTY_WHILE_HEALTHY) {
      assert.equal(types.get(name), 'counter', name);
      assert.doesNotMatch(metricsText, new RegExp(`^${name}[{ ]`, 'm'), `${name} has series now: it needs no exception`);
      const meta = await prom.targetMetadata(name.replace(/_total$/, '')); // OpenMetrics names a counter without _total
      assert.ok(
        meta.ok && meta.data.some((x) => x.target.instance === instance && x.type === 'counter'),
        `Prometheus knows ${name} as a counter of the exporter: ${JSON.stringify(meta)}`,
      );
    }
    assert.equal(empty, allQueries.filter((q) => selectors(q.expr).every((s) => EMPTY_WHILE_HEALTHY.includes(s.metric))).length);
  });

  it('serve a /metrics that promtool check metrics finds nothing to say about, with traffic through every probe', async function () {
    const { body } = await exporter.metricsText();
    const r = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    assert.deepEqual({ status: r.status, stdout: r.stdout, stderr: r.stderr }, { status: 0, stdout: '', stderr: '' });
  });
});
