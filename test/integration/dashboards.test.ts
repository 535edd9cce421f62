// SPDX-License-Identifier: Apache-2.0
// The bundled Grafana dashboards against the real thing: a Prometheus server
// (the Debian package) scrapes the exporter, running every probe, while
// traffic goes through each of them, some of it from Kubernetes-like pods
// run by runc; every query variable and every panel expression, with its
// variables filled in as Grafana would, is sent to Prometheus and must
// return series. Before that, the dashboards' shape: plain stable JSON, one
// datasource variable used everywhere, the filters on every selector, and
// metrics used as their types allow (from the live /metrics): histograms
// only as heatmaps and quantiles, counters only through rate() or
// increase(). And promtool has nothing to say about the live /metrics.
//
// Which labels select what. The TCP metrics' namespace, pod and container
// are the workload's (the pod a socket belongs to); Kubernetes service
// discovery gives every target labels of the same names for the exporter's
// own pod. Prometheus is therefore set up as the chart's ServiceMonitor and
// PodMonitor set it up: target labels namespace, pod, container (the
// exporter's) and node, and honor_labels, so that the scraped workload
// labels win, a host socket's empty namespace="" leaves it without one
// (rather than giving it the exporter's), and metrics without workload
// labels get the exporter pod's. So:
// - every dashboard selects exporters by job, node and instance only (node:
//   the label the chart adds, All where there is none), on every selector;
// - the TCP dashboard alone has namespace, pod and container variables, for
//   workloads: from a TCP metric's label values (never bpfnet_build_info's,
//   which would list the exporter's pods), and on every TCP selector;
// - no other dashboard, exporter health included, filters by namespace, pod
//   or container. Exporter health could select the exporter's pod by them,
//   as its metrics have no workload labels, but the dashboards' links carry
//   variables by name: the same name must mean the same thing on every
//   dashboard, and node and instance already name an exporter.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { runClient, spawnEchoAgent, startClient, startEchoServer, startServer, streamResults } from '../helpers/agent';
import { TestCgroup } from '../helpers/cgroup';
import { RunningExporter } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { OtlpReceiver } from '../helpers/otlp-receiver';
import { trafficAgent, TestNode, type Pod } from '../helpers/pods';
import { requireRoot } from '../helpers/privileges';
import { parseMetrics } from '../helpers/prom-text';
import { RunningPrometheus } from '../helpers/prometheus';
import { interpolate, metricNames, selectors, selectorText, type Selector } from '../helpers/promql';
import { buildSidecarProxy, startSidecarProxy } from '../helpers/sidecar-proxy';
import { cgroup2Mount } from '../../src/system';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const DASHBOARDS = path.join(ROOT, 'dashboards');
const FILES = ['exporter-health.json', 'netstack.json', 'sidecar.json', 'sock-redirect.json', 'tcp-connections.json'];
const DS = { type: 'prometheus', uid: '${datasource}' };
/** the variables every dashboard selects exporters by, in the order they narrow */
const COMMON = ['job', 'node', 'instance'];
/** the variables that select workloads, in the order they narrow, right after COMMON where they are */
const WORKLOAD = ['namespace', 'pod', 'container'];
/** the dashboards that have them */
const WORKLOAD_DASHBOARDS = ['tcp-connections.json'];
/** the metrics labelled by workload (checked against the live /metrics) */
const WORKLOAD_METRICS = [
  'bpfnet_tcp_connects_total',
  'bpfnet_tcp_connect_duration_seconds',
  'bpfnet_tcp_accepts_total',
  'bpfnet_tcp_accept_handshake_duration_seconds',
  'bpfnet_tcp_accept_queue_duration_seconds',
  'bpfnet_tcp_closes_total',
  'bpfnet_tcp_sent_bytes_total',
  'bpfnet_tcp_received_bytes_total',
  'bpfnet_tcp_retransmits_total',
  'bpfnet_tcp_connection_duration_seconds',
  'bpfnet_tcp_connection_sent_bytes',
  'bpfnet_tcp_connection_received_bytes',
  'bpfnet_tcp_srtt_seconds',
];
const PANEL_TYPES = ['heatmap', 'row', 'stat', 'table', 'timeseries'];
/** Grafana's own variables, as Grafana would fill them for the last hour at 1 s scrapes */
const BUILTINS = { __rate_interval: '30s', __interval: '5s', __range: '1h' };
/** series Prometheus adds for every target */
const PROMETHEUS_SERIES: Record<string, string> = { up: 'gauge', scrape_duration_seconds: 'gauge', scrape_samples_scraped: 'gauge' };
/** metrics the exporter declares (# TYPE) with no series until something goes wrong */
const EMPTY_WHILE_HEALTHY = ['bpfnet_scrape_errors_total'];
const RATES = ['rate', 'increase'];
/** labels that are empty by design: a drop on no interface, an accept no process took */
const MAY_BE_EMPTY = ['ifname', 'comm'];
const JOB = 'bpfnet-exporter';
/** the target labels Kubernetes service discovery and the chart's relabeling give the exporter's pod */
const EXPORTER_POD = { namespace: 'monitoring', pod: `bpfnet-exporter-${process.pid}`, container: 'bpfnet-exporter', node: `node-${process.pid}` };
/** the workloads' pods (a server, and a client with a container whose connects are refused) */
const SHOP = 'shop';

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
  legend?: string;
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
  return panelsOf(d).flatMap((p) =>
    (p.targets ?? []).map((t: any) => ({ file: d.file, panel: p.title, panelType: p.type, format: t.format, expr: t.expr, legend: t.legendFormat })),
  );
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

/** A multi-value variable with these values selected, as Grafana writes
 * it into a query: each escaped for a regular expression, several as (a|b). */
function selected(values: string[]): { value: string; regex: boolean } {
  const escaped = values.map((v) => interpolate('$v', { v: { value: v, regex: true } }));
  return { value: escaped.length === 1 ? escaped[0]! : `(${escaped.join('|')})`, regex: false };
}

/** Whether a selector's metric (a histogram's by its _bucket, _sum or _count) is labelled by workload. */
function byWorkload(metric: string): boolean {
  return WORKLOAD_METRICS.includes(metric) || WORKLOAD_METRICS.includes(metric.replace(/_(bucket|sum|count)$/, ''));
}

/** What the filters of every selector must be: one `=~"$name"` matcher for
 * each variable that narrows it, nothing else on those labels. */
function filterProblems(s: Selector, names: string[]): string[] {
  return names.flatMap((name) => {
    const on = s.matchers.filter((m) => m.label === name);
    return on.length === 1 && on[0]!.op === '=~' && on[0]!.value === `$${name}` ? [] : [`${s.metric} is not filtered by ${name}=~"$${name}"`];
  });
}

/** The filters of a selector on a dashboard: the exporter's everywhere; the
 * workload variables, where the dashboard has them, on metrics labelled by
 * workload; no matcher on namespace, pod or container otherwise (there
 * they would name the exporter's pod, or mean something else on the next
 * dashboard). */
function selectorProblems(s: Selector, workloadVariables: boolean): string[] {
  const workload = workloadVariables && byWorkload(s.metric);
  const stray = workload ? [] : s.matchers.filter((m) => WORKLOAD.includes(m.label)).map((m) => `${s.metric} has a matcher on ${m.label}`);
  return [...filterProblems(s, workload ? [...COMMON, ...WORKLOAD] : COMMON), ...stray];
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

  it('have a datasource variable, the job/node/instance variables, workload variables on the TCP dashboard only, and nothing hard-coded', function () {
    const problems: string[] = [];
    for (const d of dashboards) {
      const vars = variablesOf(d);
      assert.deepEqual([vars[0]!.type, vars[0]!.name, vars[0]!.raw.query], ['datasource', 'datasource', 'prometheus'], d.file);
      assert.deepEqual(
        vars.slice(1, 1 + COMMON.length).map((v) => v.name),
        COMMON,
        d.file,
      );
      const workload = WORKLOAD_DASHBOARDS.includes(d.file);
      const names = vars.map((v) => v.name);
      if (workload) assert.deepEqual(names.slice(1 + COMMON.length, 1 + COMMON.length + WORKLOAD.length), WORKLOAD, d.file);
      else
        assert.deepEqual(
          names.filter((n) => WORKLOAD.includes(n)),
          [],
          `${d.file} has workload variables`,
        );
      for (const [i, v] of vars.entries()) {
        if (v.type === 'datasource') continue;
        const r = v.raw;
        if (v.type !== 'query') problems.push(`${d.file}: variable ${v.name} is a ${v.type}`);
        if (JSON.stringify(r.datasource) !== JSON.stringify(DS)) problems.push(`${d.file}: variable ${v.name} does not query \${datasource}`);
        if (!(r.includeAll === true && r.multi === true && r.allValue === '.*'))
          problems.push(`${d.file}: variable ${v.name} is not multi-value with All as .*`);
        if (r.definition !== v.query) problems.push(`${d.file}: variable ${v.name}: definition and query differ`);
        // each narrows by the common variables before it (all of them, for
        // the others), a workload variable by the workload ones before it too
        const before = COMMON.includes(v.name)
          ? COMMON.slice(0, COMMON.indexOf(v.name))
          : WORKLOAD.includes(v.name)
            ? [...COMMON, ...WORKLOAD.slice(0, WORKLOAD.indexOf(v.name))]
            : COMMON;
        try {
          const [s, ...more] = selectors(labelValuesQuery(v.query).match);
          if (more.length) problems.push(`${d.file}: variable ${v.name} has more than one selector`);
          problems.push(...filterProblems(s!, before).map((p) => `${d.file}: variable ${v.name}: ${p}`));
          // workloads come from the metrics that name them, never from the exporter's pods
          if (WORKLOAD.includes(v.name) && !metricNames(s!).every(byWorkload))
            problems.push(`${d.file}: variable ${v.name} lists ${s!.metric}'s ${v.name}, not a workload's`);
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
      const workload = WORKLOAD_DASHBOARDS.includes(d.file);
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
        // ($1 and the like: label_replace's groups, which Grafana passes on)
        for (const [, name] of q.expr.matchAll(/\$\{?(\w+)/g))
          if (!names.has(name!) && !(name! in BUILTINS) && !/^\d+$/.test(name!)) problems.push(`${where(q)}: $${name} is not a variable`);
        try {
          for (const s of selectors(q.expr)) {
            problems.push(...selectorProblems(s, workload).map((p) => `${where(q)}: ${p}`));
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

/** The workloads' pods, made before the exporter so that their network
 * namespaces can be in its --netns filter: web serves; checkout's app
 * connects to it and its retry to a port where nothing listens, each
 * waiting for go. */
async function startPods(node: TestNode): Promise<{ web: Pod; checkout: Pod }> {
  const web = await node.startPod({
    namespace: SHOP,
    name: 'web',
    qos: 'burstable',
    driver: 'systemd',
    containers: [{ name: 'app', argv: trafficAgent({ role: 'serve', host: '0.0.0.0', port: 8080, down: 3000 }) }],
  });
  await web.containers[0]!.agent.waitFor('listening');
  const checkout = await node.startPod({
    namespace: SHOP,
    name: 'checkout',
    qos: 'besteffort',
    driver: 'cgroupfs',
    containers: [
      { name: 'app', argv: trafficAgent({ role: 'connect', host: web.address, port: 8080, waitForGo: true, connections: Array(3).fill({ up: 1000 }) }) },
      { name: 'retry', argv: trafficAgent({ role: 'connect', host: web.address, port: 9, waitForGo: true, connections: Array(2).fill({ up: 1 }) }) },
    ],
  });
  for (const c of checkout.containers) await c.agent.waitFor('started');
  return { web, checkout };
}

/** Traffic of the pods, and of a process of the node (in a systemd
 * service's cgroup) to the web pod. */
async function podTraffic(node: TestNode, pods: { web: Pod; checkout: Pod }, host: TestCgroup): Promise<void> {
  const [app, retry] = pods.checkout.containers;
  app!.agent.go();
  retry!.agent.go();
  const fromHost = await runClient(node.netns, { host: pods.web.address, port: 8080, connections: Array(2).fill({ up: 500 }) }, host);
  await app!.agent.waitFor('done');
  await retry!.agent.waitFor('done');
  assert.deepEqual(
    [app!, retry!].map((c) => c.agent.all('result').map((r) => r.error ?? r.received)),
    [
      [3000, 3000, 3000],
      ['ECONNREFUSED', 'ECONNREFUSED'],
    ],
  );
  assert.deepEqual(
    fromHost.results.map((r) => r.received),
    [3000, 3000],
  );
  // the server's ends are closed once it has served all five
  const server = pods.web.containers[0]!.agent;
  for (let i = 0; server.all('served').length < 5; i++) {
    assert.ok(i < 1500, `web served ${server.all('served').length} of 5`);
    await new Promise((r) => setTimeout(r, 20));
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
  let node: TestNode;
  let hostSlice: TestCgroup;
  /** a process of the node outside pods: system.slice/dashboards-client.service */
  let hostService: TestCgroup;
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
    node = TestNode.create('dashboards');
    hostSlice = new TestCgroup('', node.cgroupRoot, 'system.slice');
    hostService = new TestCgroup('', hostSlice, 'dashboards-client.service');
    const pods = await startPods(node);
    receiver = await new OtlpReceiver().start();
    exporter = await new RunningExporter(
      [
        '--probes',
        'connect,accept,close,netstack',
        ...[ns, node.netns, pods.web.netns, pods.checkout.netns].flatMap((n) => ['--netns', n.path]),
        '--kubelet-containers-dir',
        node.containersDir,
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
    // as the chart's ServiceMonitor and PodMonitor have Prometheus scrape it
    prom = await RunningPrometheus.start({ job: JOB, target: instance, labels: EXPORTER_POD, honorLabels: true });

    await makeTraffic(ns, cg);
    await podTraffic(node, pods, hostService);

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
    await hostService?.destroy();
    await hostSlice?.destroy();
    await node?.destroy();
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
    // prom-client's standard process_* and nodejs_* metrics are any Node.js
    // process's, for the dashboards and alerts users have for those
    const own = (name: string) => !/^(process|nodejs)_/.test(name);
    assert.deepEqual(
      [...types.keys()].filter((name) => own(name) && !shown.has(name)),
      [],
      'metrics on no dashboard',
    );
  });

  it(`have query variables (${allVariables.length}) that find their values in Prometheus: the scrape's job, node and instance; the pods' namespace, pod and container, never the exporter's`, async function () {
    // the exporter's pod (namespace monitoring...) is no workload: only the
    // pods that connected, accepted or closed are, retry (whose connects
    // all failed) too
    const expected: Record<string, string[]> = {
      job: [JOB],
      node: [EXPORTER_POD.node],
      instance: [instance],
      namespace: [SHOP],
      pod: ['checkout', 'web'],
      container: ['app', 'retry'],
    };
    const problems: string[] = [];
    for (const d of dashboards) {
      const values: Record<string, { value: string; regex: boolean }> = Object.fromEntries(
        Object.entries(BUILTINS).map(([k, v]) => [k, { value: v, regex: false }]),
      );
      for (const v of variablesOf(d).filter((x) => x.type === 'query')) {
        const { match, label } = labelValuesQuery(interpolate(v.query, values));
        const r = await prom.labelValues(label, match);
        if (!r.ok) problems.push(`${d.file} › variable ${v.name} › ${v.query}: ${r.error}`);
        else if (v.name in expected ? JSON.stringify(r.data) !== JSON.stringify(expected[v.name]) : !r.data.length) {
          problems.push(`${d.file} › variable ${v.name} › ${v.query}: found ${JSON.stringify(r.data)}`);
        }
        // as the user picks this exporter, and every workload the variables
        // list (so that the workload filters really filter: the node's own
        // process and the exporter's pod are left out); container and the
        // others stay All
        const pick = r.ok && r.data.length && (COMMON.includes(v.name) || v.name === 'namespace' || v.name === 'pod');
        values[v.name] = pick ? selected(r.data) : { value: '.*', regex: true };
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
      // a legend names labels every series has (not a legend of "//" or
      // "other/other"), but those that are empty by design
      const legendLabels = [...(q.legend ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!);
      for (const label of legendLabels.filter((l) => !MAY_BE_EMPTY.includes(l))) {
        if (!r.ok) break;
        const missing = r.data.result.filter((x) => !x.metric[label]);
        if (missing.length) problems.push(`${where(q)}: legend {{${label}}} is empty for ${JSON.stringify(missing[0]!.metric)}`);
      }
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

  it('filter by workload exactly the metrics the exporter labels by workload', function () {
    const types = declaredTypes(metricsText);
    const family = (name: string) => (types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, ''));
    const samples = parseMetrics(metricsText).samples;
    const labelled = new Set(samples.filter((x) => WORKLOAD.some((l) => l in x.labels)).map((x) => family(x.name)));
    assert.deepEqual([...labelled].sort(), [...WORKLOAD_METRICS].sort());
    assert.deepEqual(
      samples.filter((x) => labelled.has(family(x.name)) && !WORKLOAD.every((l) => l in x.labels)).map((x) => x.name),
      [],
      'every sample of these has all three',
    );
  });

  it(`keep the workload labels, with honor_labels and the exporter pod's target labels: a pod's series have its namespace, a host socket's none, the exporter's own metrics the target's`, async function () {
    const self = `job="${JOB}", instance="${instance}"`;
    const hostCgroup = path.relative(cgroup2Mount()!, hostService.path);
    // the exporter serves the node process's connects with namespace="" ...
    const served = parseMetrics(metricsText).find('bpfnet_tcp_connects_total', { cgroup: hostCgroup });
    assert.ok(served.length > 0, `${hostCgroup}'s connects are served`);
    for (const x of served) assert.deepEqual([x.labels.namespace, x.labels.pod, x.labels.container], ['', '', ''], JSON.stringify(x.labels));
    // ... which Prometheus stores without those labels: not the target's
    const owner = (labels: Record<string, string>) => WORKLOAD.map((l) => labels[l] ?? '-').join(' ');
    const host = await prom.series(`bpfnet_tcp_connects_total{${self}, cgroup="${hostCgroup}"}`);
    assert.ok(host.ok && host.data.length === served.length, JSON.stringify(host));
    assert.deepEqual(new Set(host.data.map(owner)), new Set(['- - -']));
    // a pod's keep the pod's
    const checkout = await prom.series(`bpfnet_tcp_connects_total{${self}, pod="checkout"}`);
    assert.ok(checkout.ok, JSON.stringify(checkout));
    assert.deepEqual(new Set(checkout.data.map(owner)), new Set([`${SHOP} checkout app`, `${SHOP} checkout retry`]));
    // what has no workload labels gets the exporter pod's, from the target
    const info = await prom.series(`bpfnet_build_info{${self}}`);
    assert.ok(info.ok && info.data.length === 1, JSON.stringify(info));
    assert.equal(owner(info.data[0]!), `${EXPORTER_POD.namespace} ${EXPORTER_POD.pod} ${EXPORTER_POD.container}`);
    assert.equal(info.data[0]!.node, EXPORTER_POD.node);
    // and nothing was renamed exported_*
    const all = await prom.series(`{${self}}`);
    assert.ok(all.ok, JSON.stringify(all));
    assert.deepEqual(
      all.data.filter((x) => Object.keys(x).some((k) => k.startsWith('exported_'))),
      [],
    );
  });

  it('serve a /metrics that promtool check metrics finds nothing to say about, with traffic through every probe', async function () {
    const { body } = await exporter.metricsText();
    const r = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    assert.deepEqual({ status: r.status, stdout: r.stdout, stderr: r.stderr }, { status: 0, stdout: '', stderr: '' });
  });
});
