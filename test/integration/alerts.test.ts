// SPDX-License-Identifier: Apache-2.0
// The bundled alerts (alerts/bpfnet-exporter.rules.yaml) against the real
// thing: Debian's promtool checks the file and runs its unit tests
// (alerts/bpfnet-exporter.rules.test.yaml), and fails them again when any
// rule's threshold is lowered, its `for` dropped or the rule removed, which
// shows each alert has a case that fires and one that must not. Every
// metric, label and value the rules select by is served by a running
// exporter (a rule on a misspelt name never fires). The chart's
// PrometheusRule, rendered by the real Helm, is test/unit/chart.test.ts's.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { dropReasonNames } from '../../src/probes/netstack';
import { onCleanup } from '../helpers/cleanup';
import { RunningExporter } from '../helpers/exporter';
import { requireRoot } from '../helpers/privileges';
import { metricNames, selectors } from '../helpers/promql';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const ALERTS = path.join(ROOT, 'alerts');
const RULES = path.join(ALERTS, 'bpfnet-exporter.rules.yaml');
const TESTS = path.join(ALERTS, 'bpfnet-exporter.rules.test.yaml');
const PROMTOOL = '/usr/bin/promtool';
/** labels Prometheus gives every series of a target (node: the chart's monitors) */
const TARGET_LABELS = ['job', 'instance', 'node'];

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: string };
  annotations: { summary: string; description: string };
}
interface RulesFile {
  groups: { name: string; rules: Rule[] }[];
}

const rulesFile = (): RulesFile => YAML.parse(fs.readFileSync(RULES, 'utf8')) as RulesFile;
const rules = (): Rule[] => rulesFile().groups.flatMap((g) => g.rules);

function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  onCleanup(dir, () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function promtool(args: string[], cwd: string): { status: number | null; out: string } {
  const r = spawnSync(PROMTOOL, args, { cwd, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

/** The rules' unit tests run against `file` (the rules as YAML text). */
function testRules(file: string): { status: number | null; out: string } {
  const dir = tempDir('bpfnet-alerts-');
  fs.writeFileSync(path.join(dir, 'bpfnet-exporter.rules.yaml'), file);
  fs.copyFileSync(TESTS, path.join(dir, 'bpfnet-exporter.rules.test.yaml'));
  return promtool(['test', 'rules', 'bpfnet-exporter.rules.test.yaml'], dir);
}

/** The rules file with rule i changed (or removed, when change returns null). */
function mutated(i: number, change: (r: Rule) => Rule | null): string {
  const f = rulesFile();
  let n = 0;
  for (const g of f.groups)
    g.rules = g.rules.flatMap((r) => {
      if (n++ !== i) return [r];
      const c = change(structuredClone(r));
      return c ? [c] : [];
    });
  return YAML.stringify(f);
}

/** Every positive threshold of a comparison in expr, times factor. */
function scaleThresholds(expr: string, factor: number): string {
  return expr.replace(/([<>]=?)\s*(\d+(?:\.\d+)?)(?![\w.])/g, (whole, op: string, n: string) =>
    Number(n) > 0 ? `${op} ${Number((Number(n) * factor).toPrecision(6))}` : whole,
  );
}

describe('alerts', function () {
  describe('promtool', function () {
    it('finds the rules file valid', function () {
      const r = promtool(['check', 'rules', RULES], ALERTS);
      assert.equal(r.out, `Checking ${RULES}\n  SUCCESS: ${rules().length} rules found\n\n`);
      assert.equal(r.status, 0);
    });

    it('passes the unit tests, with a firing case for every rule', function () {
      const r = promtool(['test', 'rules', 'bpfnet-exporter.rules.test.yaml'], ALERTS);
      assert.equal(r.out, 'Unit Testing:  bpfnet-exporter.rules.test.yaml\n  SUCCESS\n\n');
      assert.equal(r.status, 0);
      // each rule (an alert at one severity) is expected somewhere, with
      // its summary and description
      const tests = YAML.parse(fs.readFileSync(TESTS, 'utf8')) as {
        tests: { alert_rule_test: { alertname: string; exp_alerts: { exp_labels: Record<string, string>; exp_annotations: Record<string, string> }[] }[] }[];
      };
      const expected = new Set<string>();
      for (const t of tests.tests)
        for (const a of t.alert_rule_test)
          for (const e of a.exp_alerts) {
            assert.deepEqual(Object.keys(e.exp_annotations).sort(), ['description', 'summary'], a.alertname);
            expected.add(`${a.alertname} ${e.exp_labels.severity}`);
          }
      assert.deepEqual([...expected].sort(), [...new Set(rules().map((r) => `${r.alert} ${r.labels.severity}`))].sort());
    });

    it('fails the unit tests when a rule is removed, fires below its threshold, or fires at once', function () {
      this.timeout(120_000);
      const failed = (file: string, what: string) => {
        const r = testRules(file);
        assert.equal(r.status, 1, `${what}: promtool should fail:\n${r.out}`);
        assert.match(r.out, /FAILED:/, what);
      };
      // the file rewritten unchanged passes, so the failures below are the changes'
      const same = testRules(mutated(0, (r) => r));
      assert.deepEqual([same.status, same.out], [0, 'Unit Testing:  bpfnet-exporter.rules.test.yaml\n  SUCCESS\n\n']);
      const lowered: string[] = [];
      rules().forEach((rule, i) => {
        const name = `${rule.alert} (${rule.labels.severity})`;
        failed(
          mutated(i, () => null),
          `${name} removed`,
        );
        const lower = scaleThresholds(rule.expr, 0.4);
        if (lower !== rule.expr) {
          failed(
            mutated(i, (r) => ({ ...r, expr: lower })),
            `${name} with thresholds at 40 %`,
          );
          lowered.push(name);
        }
        assert.ok(rule.for, `${name} has a for`);
        failed(
          mutated(i, (r) => ({ ...r, for: '0s' })),
          `${name} without its for`,
        );
      });
      // every rule but those whose threshold is zero (== 0, > 0)
      assert.deepEqual(lowered, [
        'BpfnetTCPConnectFailures (warning)',
        'BpfnetTCPConnectFailures (critical)',
        'BpfnetTCPAcceptQueueSlow (warning)',
        'BpfnetPacketDrops (warning)',
        'BpfnetSpansDropped (warning)',
      ]);
    });
  });

  describe('against the exporter', function () {
    before(requireRoot);

    it('select only metrics, labels and values a running exporter serves', async function () {
      // a port nothing listens on: the spans' collector, and a refused connect
      const closed = await new Promise<number>((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const port = (s.address() as net.AddressInfo).port;
          s.close(() => resolve(port));
        });
      });
      const exporter = new RunningExporter(['--probes', 'connect,accept,close,netstack', '--otlp-endpoint', `http://127.0.0.1:${closed}`]);
      await exporter.ready();
      await new Promise<void>((resolve) => net.connect(closed, '127.0.0.1').on('error', () => resolve()));
      // the scrapes themselves are accepted connections: accept-queue series
      const m = await exporter.settle(
        (x) =>
          x.find('bpfnet_skb_drops_total', { reason: 'no_socket' }).length > 0 &&
          x.find('bpfnet_tcp_accept_queue_duration_seconds_count').length > 0 &&
          x.find('bpfnet_tcp_connects_total', { result: 'refused' }).length > 0,
      );
      const { body } = await exporter.metricsText();
      await exporter.stop();
      const types = new Map([...body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((t) => [t[1]!, t[2]!]));
      /** the name as served, and the family (# TYPE) it belongs to */
      const family = (name: string) => {
        if (types.has(name) && types.get(name) !== 'histogram') return name;
        const base = name.replace(/_(bucket|count|sum)$/, '');
        return base !== name && types.get(base) === 'histogram' ? base : undefined;
      };
      const reasons = new Set(dropReasonNames().values());
      let checked = 0;
      for (const rule of rules()) {
        for (const s of selectors(rule.expr)) {
          for (const name of metricNames(s)) {
            const what = `${rule.alert}: ${name}`;
            assert.ok(family(name), `${what} is not a metric the exporter serves`);
            const served = m.find(name);
            assert.ok(served.length > 0, `${what}: no series to check labels against`);
            const labels = new Set([...served.flatMap((x) => Object.keys(x.labels)), ...TARGET_LABELS]);
            for (const matcher of s.matchers) {
              assert.ok(labels.has(matcher.label), `${what}: no label ${matcher.label}`);
              if (name === 'bpfnet_skb_drops_total' && matcher.label === 'reason') {
                for (const r of matcher.value.split('|')) assert.ok(reasons.has(r), `${what}: ${r} is no drop reason of this kernel`);
              } else if (matcher.op === '=' || matcher.op === '!=') {
                const values = new Set(served.map((x) => x.labels[matcher.label]));
                assert.ok(values.has(matcher.value), `${what}: ${matcher.label}="${matcher.value}" is never served`);
              }
            }
            for (const e of s.within)
              for (const by of e.by ?? [])
                assert.ok(labels.has(by) || (by === 'le' && name.endsWith('_bucket')), `${what}: grouped by ${by}, which it does not have`);
            checked++;
          }
        }
      }
      assert.ok(checked >= rules().length, 'every rule selects metrics');
    });
  });
});
