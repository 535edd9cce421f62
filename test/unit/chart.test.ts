// SPDX-License-Identifier: Apache-2.0
// The Helm chart (helm/bpfnet-exporter), through the real Helm 4: its values
// against its schema as Helm checks them (Helm's own words), `helm lint
// --strict` and `helm install --dry-run=client` over every values file
// rendered, every object checked against the Kubernetes API's types
// (kubernetes-models, @kubernetes-models/prometheus-operator) and against the
// others (selectors, ports, volumes), the container's arguments run through
// the exporter's own parser and validation, and the dashboards' ConfigMaps
// compared byte for byte with dashboards/.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { LOG_LEVELS } from '../../src/log';
import { DEPRECATED_PROBES, PROBE_NAMES } from '../../src/options';
import {
  allOn,
  allOnHere,
  chart,
  CHART_DIR,
  chartCopy,
  container,
  DASHBOARDS,
  exporterHelp,
  isSubset,
  lintProblems,
  NOT_PERMITTED,
  render,
  renderRaw,
  ROOT,
  runExporter,
  schemaErrors,
  type Obj,
  type Values,
} from '../helpers/chart-check';
import { objectErrors } from '../helpers/k8s-models';

describe('Helm chart', function () {
  describe('values.schema.json', function () {
    it('accepts values.yaml and the all-on values, and helm lint --strict passes them', function () {
      assert.deepEqual(schemaErrors({}), []);
      assert.deepEqual(schemaErrors(allOn), []);
      assert.deepEqual(schemaErrors({ exporter: { probes: [], redirect: { enabled: true } } }), [], 'redirect alone');
      assert.deepEqual(schemaErrors({ exporter: { spans: { sampleRatio: 0 } } }), []);
      const ci = fs.readdirSync(path.join(CHART_DIR, 'ci')).filter((f) => f.endsWith('.yaml'));
      assert.ok(ci.includes('all-on-values.yaml'), ci.join(' '));
      for (const f of ['values.yaml', ...ci.map((c) => `ci/${c}`)]) {
        const values = YAML.parse(fs.readFileSync(path.join(CHART_DIR, f), 'utf8')) as Values;
        assert.deepEqual(lintProblems(values), [], f);
        assert.ok(render(values).objects.length > 0, f);
      }
    });

    it('fails helm lint --strict for values the schema refuses, in the same words', function () {
      assert.deepEqual(lintProblems({ exporter: { listen: { port: 70000 } } }), [
        "[ERROR] values.yaml: - at '/exporter/listen/port': maximum: got 70,000, want 65,535",
        "[ERROR] templates/: values don't meet the specifications of the schema(s) in the following chart(s):",
      ]);
    });

    it('lists the probes and log levels the exporter has', function () {
      const s = chart.schema as Obj;
      assert.deepEqual(s.properties.exporter.properties.probes.items.enum, [...PROBE_NAMES, ...Object.keys(DEPRECATED_PROBES)]);
      assert.deepEqual(s.properties.exporter.properties.logLevel.enum, [...LOG_LEVELS]);
    });

    // Each value the exporter would refuse: the schema names its key, and the
    // exporter, given it anyway (the schema bypassed), stops with a usage error.
    const refused: { values: Values; errors: string[]; cli: RegExp }[] = [
      {
        values: { exporter: { probes: ['connect', 'tcp'] } },
        errors: ["- at '/exporter/probes/1': value must be one of 'connect', 'accept', 'close', 'netstack', 'netsubsys'"],
        cli: /--probes: unknown probe "tcp"/,
      },
      {
        values: { exporter: { probes: [] } },
        errors: ["- at '/exporter': 'allOf' failed", "  - at '/exporter/probes': minItems: got 0, want 1"],
        cli: /--probes is empty/,
      },
      {
        values: { exporter: { probes: ['netstack'], spans: { otlpEndpoint: 'http://otel-collector:4318' } } },
        // Helm words a failed "contains" as the list's mismatch, then the item's
        errors: [
          "- at '/exporter': 'allOf' failed",
          "  - at '/exporter/probes': no items match contains schema",
          "    - at '/exporter/probes/0': value must be one of 'connect', 'accept', 'close'",
        ],
        cli: /spans come from the TCP probes/,
      },
      {
        values: { exporter: { probes: ['netstack'], sidecars: { comms: ['envoy'] } } },
        errors: [
          "- at '/exporter': 'allOf' failed",
          "  - at '/exporter/probes': no items match contains schema",
          "    - at '/exporter/probes/0': value must be one of 'connect', 'accept', 'close'",
        ],
        cli: /sidecars are timed by the TCP probes/,
      },
      {
        values: { exporter: { listen: { port: 70000 } } },
        errors: ["- at '/exporter/listen/port': maximum: got 70,000, want 65,535"],
        cli: /--listen 0\.0\.0\.0:70000: not an address/,
      },
      {
        values: { exporter: { listen: { host: '::1' } } },
        errors: ["- at '/exporter/listen/host': '::1' does not match pattern '^(\\\\[[0-9a-fA-F:.]+\\\\]|[^:\\\\[\\\\]]*)$'"],
        cli: /--listen ::1:19435: not an address/,
      },
      {
        values: { exporter: { spans: { eventRingBytes: 5000 } } },
        errors: [
          "- at '/exporter/spans/eventRingBytes': value must be one of 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304, 8388608, 16777216, 33554432, 67108864, 134217728, 268435456, 536870912, 1073741824",
        ],
        cli: /--event-ring-bytes 5000: give a power of two/,
      },
      {
        values: { exporter: { spans: { sampleRatio: 1.5 } } },
        errors: ["- at '/exporter/spans/sampleRatio': maximum: got 1.5, want 1"],
        cli: /--trace-sample-ratio 1\.5: give a ratio from 0 to 1/,
      },
      {
        values: { exporter: { spans: { otlpEndpoint: 'otel-collector:4318' } } },
        errors: ["- at '/exporter/spans/otlpEndpoint': 'otel-collector:4318' does not match pattern '^(|https?://.+)$'"],
        cli: /--otlp-endpoint otel-collector:4318: not http or https/,
      },
      {
        values: { exporter: { logLevel: 'verbose' } },
        errors: ["- at '/exporter/logLevel': value must be one of 'error', 'warn', 'info', 'debug'"],
        cli: /Invalid values: Argument: log-level, Given: "verbose"/,
      },
      {
        values: { exporter: { httpConnectionLimit: 0 } },
        errors: ["- at '/exporter/httpConnectionLimit': minimum: got 0, want 1"],
        cli: /--http-connection-limit 0: give an integer from 1 to/,
      },
      {
        values: { exporter: { acceptPortLimit: 0 } },
        errors: ["- at '/exporter/acceptPortLimit': minimum: got 0, want 1"],
        cli: /--accept-port-limit 0: give an integer from 1 to 65535/,
      },
      {
        values: { exporter: { netstackSeriesTtl: -1 } },
        errors: ["- at '/exporter/netstackSeriesTtl': minimum: got -1, want 0"],
        cli: /--netstack-series-ttl -1: give seconds/,
      },
      {
        values: { exporter: { filters: { pids: [0] } } },
        errors: ["- at '/exporter/filters/pids/0': minimum: got 0, want 1"],
        cli: /--pid 0: not a process id/,
      },
      { values: { exporter: { filters: { ports: [0] } } }, errors: ["- at '/exporter/filters/ports/0': minimum: got 0, want 1"], cli: /--port 0: not a port/ },
      {
        values: { exporter: { sidecars: { comms: ['sixteen-byte-cmd'] } } },
        errors: ["- at '/exporter/sidecars/comms/0': maxLength: got 16, want 15"],
        cli: /--sidecar-comm "sixteen-byte-cmd": give a command name of 1 to 15 bytes/,
      },
      {
        values: { exporter: { redirect: { enabled: true, ports: Array.from({ length: 65 }, (_, i) => 1000 + i) } } },
        errors: ["- at '/exporter/redirect/ports': maxItems: got 65, want 64"],
        cli: /--redirect-ports: 65 ports; give at most 64/,
      },
      {
        values: { exporter: { redirect: { enabled: true, cgroup: '' } } },
        errors: ["- at '/exporter/redirect/cgroup': minLength: got 0, want 1", "- at '/exporter/redirect/cgroup': '' does not match pattern '\\\\S'"],
        cli: /--redirect-cgroup is missing: name the cgroup/,
      },
      {
        values: { exporter: { redirect: { enabled: true, cgroup: ' ' } } },
        errors: ["- at '/exporter/redirect/cgroup': ' ' does not match pattern '\\\\S'"],
        cli: /--redirect-cgroup is missing: name the cgroup/,
      },
    ];

    it('rejects what the exporter refuses, naming the key; the exporter refuses it too', async function () {
      const runs = refused.map(async ({ values, errors, cli }) => {
        assert.deepEqual(schemaErrors(values), errors, JSON.stringify(values));
        const r = await runExporter(render(values, { skipSchema: true }).one('DaemonSet'));
        assert.equal(r.status, 2, `${JSON.stringify(values)}: ${r.stderr}`);
        assert.match(r.stderr, cli);
      });
      await Promise.all(runs);
    });

    it('rejects what Kubernetes or the exporter cannot work with, naming the key', function () {
      const cases: [Values, string[]][] = [
        [{ exporter: { prob: ['connect'] } }, ["- at '/exporter': additional properties 'prob' not allowed"]],
        [{ exporter: { filters: { ports: ['443'] } } }, ["- at '/exporter/filters/ports/0': got string, want integer"]],
        [{ exporter: { filters: { netns: ['netns-of-a-pod'] } } }, ["- at '/exporter/filters/netns/0': 'netns-of-a-pod' does not match pattern '^/[^,]*$'"]],
        [{ exporter: { filters: { cgroups: ['a,b'] } } }, ["- at '/exporter/filters/cgroups/0': 'a,b' does not match pattern '^[^,]+$'"]],
        [{ securityContext: { runAsUser: 1000 } }, ["- at '/securityContext/runAsUser': value must be 0"]],
        [{ securityContext: { runAsNonRoot: true } }, ["- at '/securityContext/runAsNonRoot': value must be false"]],
        [{ securityContext: { privileged: true } }, ["- at '/securityContext': additional properties 'privileged' not allowed"]],
        [{ bpffsMountPropagation: 'Bidirectional' }, ["- at '': 'allOf' failed", "  - at '/bpffsMountPropagation': 'not' failed"]],
        [{ image: { pullPolicy: 'always' } }, ["- at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"]],
        [{ serviceMonitor: { interval: '30' } }, ["- at '/serviceMonitor/interval': '30' does not match pattern '^(|([0-9]+(ms|s|m|h|d|w|y))+)$'"]],
        [{ hostPaths: { bpffs: 'sys/fs/bpf' } }, ["- at '/hostPaths/bpffs': 'sys/fs/bpf' does not match pattern '^/'"]],
        [{ service: { port: '19435' } }, ["- at '/service/port': got string, want integer"]],
        [{ dashboards: { labelValue: 1 } }, ["- at '/dashboards/labelValue': got number, want string"]],
        [{ resources: { limits: { memory: 512 } } }, ["- at '/resources/limits/memory': got number, want string"]],
      ];
      for (const [values, errors] of cases) assert.deepEqual(schemaErrors(values), errors, JSON.stringify(values));
    });
  });

  describe('README.md', function () {
    it('lists every value with its default', function () {
      const readme = fs.readFileSync(path.join(CHART_DIR, 'README.md'), 'utf8').split('\n## Values\n')[1]!;
      const rows = new Map([...readme.matchAll(/^\| `([\w.]+)` \| (.*?) \|/gm)].map((m) => [m[1]!, m[2]!]));
      // a map the table lists as one row is a leaf; other maps are listed key by key
      const leaves: [string, unknown][] = [];
      const walk = (v: Values, prefix: string) => {
        for (const [k, x] of Object.entries(v)) {
          const key = prefix + k;
          if (typeof x === 'object' && x !== null && !Array.isArray(x) && !rows.has(key)) walk(x as Values, `${key}.`);
          else leaves.push([key, x]);
        }
      };
      walk(chart.values, '');
      assert.deepEqual(
        [...rows.keys()],
        leaves.map(([k]) => k),
      );
      for (const [key, value] of leaves) {
        const big = typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length > 0;
        const cell = rows.get(key);
        if (!(big && cell === 'see `values.yaml`')) assert.equal(cell, `\`${JSON.stringify(value)}\``, key);
      }
    });
  });

  describe('templates', function () {
    it('render the DaemonSet, its Service and ServiceAccount, and a ConfigMap per dashboard by default', function () {
      const { objects } = render();
      const dashboards = fs.readdirSync(DASHBOARDS).filter((f) => f.endsWith('.json'));
      assert.deepEqual(
        objects.map((o) => `${o.kind} ${o.metadata.name}`).sort(),
        [
          ...dashboards.map((f) => `ConfigMap bpfnet-exporter-dashboard-${f.replace(/\.json$/, '')}`),
          'DaemonSet bpfnet-exporter',
          'Service bpfnet-exporter',
          'ServiceAccount bpfnet-exporter',
        ].sort(),
      );
    });

    it('render the ServiceMonitor, PodMonitor and PrometheusRule too with everything on', function () {
      const { objects } = render(allOn);
      const kinds = objects.map((o) => `${o.apiVersion} ${o.kind}`).filter((k) => !k.endsWith('ConfigMap'));
      assert.deepEqual(kinds.sort(), [
        'apps/v1 DaemonSet',
        'monitoring.coreos.com/v1 PodMonitor',
        'monitoring.coreos.com/v1 PrometheusRule',
        'monitoring.coreos.com/v1 ServiceMonitor',
        'v1 Service',
        'v1 ServiceAccount',
      ]);
    });

    it('give every object a name, the namespace and the chart labels, and only fields of its Kubernetes type', function () {
      for (const values of [{}, allOn]) {
        for (const o of render(values).objects) {
          const what = `${o.kind} ${o.metadata?.name}`;
          assert.match(o.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, what);
          assert.ok(o.metadata.name.length <= 63, what);
          const ns = values !== allOn ? 'monitoring' : o.kind === 'ConfigMap' ? 'grafana' : o.kind === 'PrometheusRule' ? 'alerting' : 'monitoring';
          assert.equal(o.metadata.namespace, ns, what);
          assert.ok(
            isSubset(
              {
                'app.kubernetes.io/name': 'bpfnet-exporter',
                'app.kubernetes.io/instance': 'bpfnet-exporter',
                'app.kubernetes.io/version': chart.metadata.appVersion,
                'app.kubernetes.io/managed-by': 'Helm',
                'helm.sh/chart': `bpfnet-exporter-${chart.metadata.version}`,
              },
              o.metadata.labels,
            ),
            what,
          );
          for (const [k, v] of Object.entries({ ...o.metadata.labels, ...o.spec?.template?.metadata?.labels })) {
            assert.match(String(v), /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/, `${what}: label ${k}`);
            assert.ok(String(v).length <= 63, `${what}: label ${k}`);
          }
          assert.deepEqual(objectErrors(o), [], what);
        }
      }
    });

    it('catch a field Kubernetes does not have, and a value of the wrong type', function () {
      const copy = chartCopy();
      try {
        const file = path.join(copy.dir, 'templates', 'daemonset.yaml');
        const template = fs.readFileSync(file, 'utf8');
        const edited = template
          .replace('hostPID:', 'hostPid:')
          .replace('mountPropagation:', 'mountpropagation:')
          .replace(
            'terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds | int64 }}',
            'terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds | quote }}',
          );
        assert.equal(edited.split('\n').filter((l, i) => l !== template.split('\n')[i]).length, 3, 'three lines changed');
        fs.writeFileSync(file, edited);
        const ds = renderRaw({}, { chartDir: copy.dir }).one('DaemonSet');
        assert.deepEqual(objectErrors(ds), [
          'DaemonSet: data/spec/template/spec/terminationGracePeriodSeconds must be integer',
          'DaemonSet.spec.template.spec.hostPid: no such field in IPodSpec',
          'DaemonSet.spec.template.spec.containers[0].volumeMounts[0].mountpropagation: no such field in IVolumeMount',
        ]);
        assert.throws(() => render({}, { chartDir: copy.dir }), /DaemonSet bpfnet-exporter/);
      } finally {
        copy.remove();
      }
    });

    it('catch a field the prometheus-operator does not have', function () {
      const copy = chartCopy();
      try {
        const file = path.join(copy.dir, 'templates', 'servicemonitor.yaml');
        const template = fs.readFileSync(file, 'utf8');
        assert.match(template, /honorLabels:/);
        fs.writeFileSync(file, template.replace('honorLabels:', 'honourLabels:'));
        const sm = renderRaw({ serviceMonitor: { enabled: true } }, { chartDir: copy.dir }).one('ServiceMonitor');
        assert.deepEqual(objectErrors(sm), ['ServiceMonitor.spec.endpoints[0].honourLabels: no such field in IEndpoint']);
      } finally {
        copy.remove();
      }
    });

    it('connect the DaemonSet, the Service and the monitors by labels and the metrics port', function () {
      for (const values of [{}, allOn]) {
        const { one } = render(values);
        const ds = one('DaemonSet');
        const pod = ds.spec.template;
        assert.ok(isSubset(ds.spec.selector.matchLabels, pod.metadata.labels), 'the DaemonSet selects its pods');
        const port = values === allOn ? 9436 : 19435;
        assert.deepEqual(container(ds).ports, [{ name: 'metrics', containerPort: port, protocol: 'TCP' }]);
        const svc = one('Service');
        assert.ok(isSubset(svc.spec.selector, pod.metadata.labels), 'the Service selects the pods');
        assert.equal(svc.spec.type, 'ClusterIP');
        assert.deepEqual(svc.spec.ports, [{ name: 'metrics', port: values === allOn ? 9100 : 19435, targetPort: 'metrics', protocol: 'TCP' }]);
        assert.equal(pod.spec.serviceAccountName, one('ServiceAccount').metadata.name);
        for (const probe of ['livenessProbe', 'readinessProbe']) assert.equal(container(ds)[probe].httpGet.port, 'metrics');
        if (values !== allOn) continue;
        const sm = one('ServiceMonitor');
        assert.ok(isSubset(sm.spec.selector.matchLabels, svc.metadata.labels), 'the ServiceMonitor selects the Service');
        assert.deepEqual(sm.spec.namespaceSelector, { matchNames: ['monitoring'] });
        assert.equal(sm.spec.endpoints[0].port, 'metrics');
        assert.equal(sm.metadata.labels.release, 'prometheus');
        const pm = one('PodMonitor');
        assert.ok(isSubset(pm.spec.selector.matchLabels, pod.metadata.labels), 'the PodMonitor selects the pods');
        assert.equal(pm.spec.podMetricsEndpoints[0].port, 'metrics');
        assert.deepEqual(pod.metadata.annotations, {
          'prometheus.io/scrape': 'true',
          'prometheus.io/port': '9436',
          'prometheus.io/path': '/metrics',
          'example.com/team': 'network',
        });
      }
    });

    // the operator gives targets namespace, pod and container labels (the
    // exporter's pod): honoring the scraped ones keeps the TCP metrics'
    // workload labels instead of renaming them exported_*
    it('honor the scraped labels in the ServiceMonitor and PodMonitor by default, and not when told', function () {
      const honoring = (set: Values = {}) => {
        const { one } = render({ serviceMonitor: { enabled: true, ...set }, podMonitor: { enabled: true, ...set } });
        return [one('ServiceMonitor').spec.endpoints, one('PodMonitor').spec.podMetricsEndpoints].map((e: Obj[]) => e.map((x) => x.honorLabels));
      };
      assert.deepEqual(honoring(), [[true], [true]]);
      assert.deepEqual(honoring({ honorLabels: false }), [[false], [false]]);
    });

    it("mount the host's bpffs, cgroup2, BTF and tracefs, each volumeMount with a volume", function () {
      for (const values of [{}, allOn]) {
        const ds = render(values).one('DaemonSet');
        const spec = ds.spec.template.spec;
        const volumes = new Map<string, Obj>(spec.volumes.map((v: Obj) => [v.name, v]));
        assert.equal(volumes.size, spec.volumes.length, 'volume names are unique');
        const mounts: Obj[] = container(ds).volumeMounts;
        assert.equal(new Set(mounts.map((m) => m.mountPath)).size, mounts.length, 'mount paths are unique');
        for (const m of mounts) assert.ok(volumes.has(m.name), `volume of ${m.mountPath}`);
        const host = (mountPath: string) => {
          const m = mounts.find((x) => x.mountPath === mountPath)!;
          return { path: volumes.get(m.name)!.hostPath?.path, readOnly: m.readOnly ?? false, propagation: m.mountPropagation };
        };
        const privileged = values === allOn;
        assert.deepEqual(host('/sys/fs/bpf'), { path: '/sys/fs/bpf', readOnly: false, propagation: privileged ? 'Bidirectional' : 'HostToContainer' });
        assert.deepEqual(host('/sys/fs/cgroup'), { path: '/sys/fs/cgroup', readOnly: true, propagation: undefined });
        assert.deepEqual(host('/sys/kernel/btf'), { path: '/sys/kernel/btf', readOnly: true, propagation: undefined });
        assert.deepEqual(host('/sys/kernel/tracing'), { path: '/sys/kernel/tracing', readOnly: true, propagation: undefined });
        assert.deepEqual(host('/var/log/containers'), { path: '/var/log/containers', readOnly: true, propagation: undefined });
        assert.equal(mounts.filter((m) => m.mountPath.startsWith('/proc') || m.mountPath.startsWith('/host')).length, 0, "hostPID gives the node's /proc");
        assert.equal(spec.hostPID, true);
        assert.equal(mounts.length, privileged ? 6 : 5);
      }
    });

    it('run with named capabilities by default, privileged only when asked', function () {
      const ds = render().one('DaemonSet');
      assert.deepEqual(container(ds).securityContext, {
        runAsUser: 0,
        runAsNonRoot: false,
        readOnlyRootFilesystem: true,
        appArmorProfile: { type: 'Unconfined' },
        capabilities: { drop: ['ALL'], add: ['BPF', 'PERFMON'] },
      });
      assert.equal(ds.spec.template.spec.enableServiceLinks, false);
      // each feature adds what it needs, and only that
      const caps = (v: Values) => container(render(v).one('DaemonSet')).securityContext.capabilities.add;
      assert.deepEqual(caps({ exporter: { redirect: { enabled: true } } }), ['BPF', 'PERFMON', 'NET_ADMIN']);
      assert.deepEqual(caps({ exporter: { enableBpfStats: true } }), ['BPF', 'PERFMON', 'SYS_ADMIN']);
      assert.deepEqual(caps({ exporter: { filters: { netns: ['/run/netns/a'] } } }), ['BPF', 'PERFMON']);
      assert.deepEqual(caps({ exporter: { filters: { netns: ['/run/netns/a', '/proc/1/ns/net', '/proc/2/ns/net'] } } }), ['BPF', 'PERFMON', 'SYS_PTRACE']);
      assert.deepEqual(caps({ extraCapabilities: ['SYS_RESOURCE'] }), ['BPF', 'PERFMON', 'SYS_RESOURCE']);
      assert.equal(ds.spec.template.spec.hostNetwork, false);
      assert.equal(ds.spec.template.spec.dnsPolicy, undefined);
      assert.equal(ds.spec.template.spec.automountServiceAccountToken, false);
      assert.deepEqual(ds.spec.template.spec.nodeSelector, { 'kubernetes.io/os': 'linux' });
      assert.deepEqual(ds.spec.template.spec.tolerations, [{ operator: 'Exists' }]);
      assert.equal(container(ds).image, `bpfnet-exporter:${chart.metadata.appVersion}`);

      const on = render(allOn).one('DaemonSet');
      assert.deepEqual(container(on).securityContext, { privileged: true, runAsUser: 0 });
      assert.equal(on.spec.template.spec.hostNetwork, true);
      assert.equal(on.spec.template.spec.dnsPolicy, 'ClusterFirstWithHostNet');
      assert.equal(on.spec.template.spec.priorityClassName, 'system-node-critical');
      assert.equal(container(on).image, 'registry.example.com/bpfnet-exporter:0.1.0-test');
    });

    it('leave out the Service and the ServiceAccount when asked', function () {
      const { objects, one } = render({ service: { enabled: false }, serviceAccount: { create: false }, dashboards: { enabled: false } });
      assert.deepEqual(
        objects.map((o) => o.kind),
        ['DaemonSet'],
      );
      assert.equal(one('DaemonSet').spec.template.spec.serviceAccountName, 'default');
    });

    it("give the container the exporter's flags the values name, the exporter's defaults by default", function () {
      const args = container(render().one('DaemonSet')).args;
      assert.deepEqual(args, [
        'run',
        '--listen=0.0.0.0:19435',
        '--http-connection-limit=128',
        '--probes=connect,accept,close',
        '--log-level=info',
        '--log-format=logfmt',
        '--readiness=serving',
        '--accept-port-limit=1024',
        '--max-series=10000',
        '--kubelet-containers-dir=/var/log/containers',
        '--netstack-series-ttl=600',
        '--event-ring-bytes=4194304',
      ]);
      const help = exporterHelp();
      for (const arg of args.slice(1)) {
        const [flag, value] = arg.slice(2).split('=') as [string, string];
        assert.equal(JSON.parse(help.get(flag)!), /^\d+$/.test(value) ? Number(value) : value, `--${flag} is the exporter's default`);
      }

      assert.deepEqual(container(render(allOn).one('DaemonSet')).args, [
        'run',
        '--listen=[::]:9436',
        '--http-connection-limit=256',
        '--probes=connect,accept,close,netstack',
        '--log-level=debug',
        '--log-format=json',
        '--readiness=all-probes',
        '--enable-bpf-stats',
        '--pid=1',
        '--netns=/proc/1/ns/net',
        '--cgroup=kubepods.slice',
        '--port=80',
        '--port=443',
        '--accept-port-limit=2048',
        '--max-series=5000',
        '--labels=-cgroup,-peer_port',
        '--kubelet-containers-dir=/var/log/containers',
        '--netstack-series-ttl=300',
        '--sidecar-comm=envoy',
        '--sidecar-comm=pilot-agent',
        '--sidecar-pid=1',
        '--otlp-endpoint=http://otel-collector.monitoring:4318',
        '--trace-sample-ratio=0.25',
        '--event-ring-bytes=16777216',
        '--redirect',
        '--redirect-cgroup=kubepods.slice',
        '--redirect-ports=15001',
        '--redirect-ports=15006',
        '--bpf-dir=/app/build/bpf',
      ]);
    });

    it('reach every flag of the exporter from values', function () {
      const args: string[] = container(render(allOn).one('DaemonSet')).args;
      const given = new Set(args.slice(1).map((a) => a.slice(2).split('=')[0]));
      assert.deepEqual([...given].sort(), [...exporterHelp().keys()].sort());
    });

    it('choose the OTLP encoding by OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, only when spans are sent', function () {
      const protocol = (v: Values) =>
        (container(render(v).one('DaemonSet')).env as Obj[]).filter((e) => e.name === 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL').map((e) => e.value);
      assert.deepEqual(protocol({}), []);
      assert.deepEqual(protocol({ exporter: { spans: { otlpEndpoint: 'http://otel-collector:4318' } } }), ['http/protobuf']);
      assert.deepEqual(protocol(allOn), ['http/json']);
      assert.deepEqual(schemaErrors({ exporter: { spans: { protocol: 'grpc' } } }), []);
      assert.deepEqual(schemaErrors({ exporter: { spans: { protocol: 'http/thrift' } } }), [
        "- at '/exporter/spans/protocol': value must be one of 'http/protobuf', 'http/json', 'grpc'",
      ]);
    });

    it('start the exporter with arguments it accepts: it stops only for lack of privileges', async function () {
      const here = allOnHere().exporter as { redirect: { cgroup: string } };
      const cases: Values[] = [{}, allOnHere(), { exporter: { probes: [], redirect: { enabled: true, cgroup: here.redirect.cgroup } } }];
      const runs = await Promise.all(cases.map((v) => runExporter(render(v).one('DaemonSet'))));
      // all on logs JSON (--log-format=json): its last line too
      const json = (r: { stderr: string }) => ({ ...r, stderr: `bpfnet-exporter: ${(JSON.parse(r.stderr) as { msg: string }).msg}\n` });
      for (const [i, r] of runs.entries()) assert.deepEqual(i === 1 ? json(r) : r, { status: 1, stdout: '', stderr: NOT_PERMITTED });
      // the default redirect cgroup is the pods': this machine has none
      const pods = await runExporter(render({ exporter: { redirect: { enabled: true } } }).one('DaemonSet'));
      assert.equal(pods.status, 2);
      assert.match(
        pods.stderr,
        /^bpfnet-exporter: --redirect-cgroup kubepods: neither kubepods\.slice \(systemd cgroup driver\) nor kubepods \(cgroupfs\) is under /,
      );
    });

    it('let an argument the exporter does not know stop it', async function () {
      const r = await runExporter(render({ extraArgs: ['--probe=connect'] }).one('DaemonSet'));
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /Unknown argument: probe/);
    });

    it('print notes that name the DaemonSet and what is switched on', function () {
      const plain = render().notes;
      assert.match(plain, /kubectl -n monitoring port-forward ds\/bpfnet-exporter 19435\n/);
      assert.match(plain, /Nothing tells Prometheus to scrape it yet/);
      assert.doesNotMatch(plain, /redirect is on|privileged|PrometheusRule/);
      const on = render(allOn).notes;
      assert.match(on, /through ServiceMonitor bpfnet-exporter/);
      assert.match(on, /same-host TCP connections of cgroup kubepods\.slice skip/);
      assert.match(on, /runs privileged/);
      assert.match(on, /ConfigMaps labelled grafana_dashboard=1 in namespace grafana/);
      assert.match(on, /Alerts: PrometheusRule bpfnet-exporter in namespace alerting: your Prometheus must select its labels/);
    });
  });

  describe('dashboards', function () {
    const sources = fs
      .readdirSync(DASHBOARDS)
      .filter((f) => f.endsWith('.json'))
      .sort();

    it('exist in dashboards/, and the chart holds the same files (scripts/chart-dashboards)', function () {
      assert.ok(sources.length > 0, 'dashboards/*.json');
      const copies = fs.readdirSync(path.join(CHART_DIR, 'dashboards')).sort();
      assert.deepEqual(copies, sources);
      for (const f of sources)
        assert.ok(
          fs.readFileSync(path.join(CHART_DIR, 'dashboards', f)).equals(fs.readFileSync(path.join(DASHBOARDS, f))),
          `${f} is out of date: run scripts/chart-dashboards`,
        );
      const check = spawnSync('bash', [path.join(ROOT, 'scripts', 'chart-dashboards'), '--check'], { encoding: 'utf8' });
      assert.deepEqual([check.status, check.stderr], [0, '']);
    });

    it('become one ConfigMap each, byte for byte, labelled for the Grafana sidecar', function () {
      const maps = render().find('ConfigMap');
      assert.equal(maps.length, sources.length);
      for (const f of sources) {
        const cm = maps.find((m) => m.metadata.name === `bpfnet-exporter-dashboard-${f.replace(/\.json$/, '')}`)!;
        assert.ok(cm, f);
        assert.deepEqual(Object.keys(cm.data), [f]);
        assert.ok(Buffer.from(cm.data[f], 'utf8').equals(fs.readFileSync(path.join(DASHBOARDS, f))), `${f} byte for byte`);
        assert.equal(cm.metadata.labels.grafana_dashboard, '1');
        assert.equal(cm.metadata.annotations, undefined);
        assert.ok(Buffer.byteLength(cm.data[f]) < 1 << 20, `${f}: a ConfigMap holds at most 1 MiB`);
      }
      for (const cm of render(allOn).find('ConfigMap')) {
        assert.equal(cm.metadata.namespace, 'grafana');
        assert.deepEqual(cm.metadata.annotations, { grafana_folder: 'Network', 'example.com/source': 'bpfnet-exporter' });
      }
    });

    it('keep any pretty-printed JSON byte for byte, whatever its strings hold', function () {
      const tricky = {
        title: 'quotes " and \\ backslashes, a {{ .Values.x }} that is not a template, # no comment, key: value',
        unicode: 'µs → 1e-6 s, 日本語, emoji 🚦',
        controls: 'tab\tnewline\ncarriage\r',
        leading: '   spaces   ',
        docSeparator: '\n---\n',
        nested: { list: [1, 2.5, -3e-7, true, null, ''], empty: {}, none: [] },
        long: 'x'.repeat(5000),
      };
      const copy = chartCopy();
      const dir = path.join(copy.dir, 'dashboards');
      fs.rmSync(dir, { recursive: true });
      fs.mkdirSync(dir);
      const text = JSON.stringify(tricky, null, 2) + '\n';
      fs.writeFileSync(path.join(dir, 'tricky.json'), text);
      fs.writeFileSync(path.join(dir, 'compact.json'), JSON.stringify(tricky) + '\n');
      let maps: Obj[];
      try {
        maps = render({}, { chartDir: copy.dir }).find('ConfigMap');
      } finally {
        copy.remove();
      }
      assert.deepEqual(
        maps.map((m) => m.metadata.name),
        ['bpfnet-exporter-dashboard-compact', 'bpfnet-exporter-dashboard-tricky'],
      );
      assert.equal(maps[1]!.data['tricky.json'], text);
      assert.equal(maps[0]!.data['compact.json'], JSON.stringify(tricky) + '\n');
    });
  });

  describe('alerts', function () {
    const source = fs.readFileSync(path.join(ROOT, 'alerts', 'bpfnet-exporter.rules.yaml'));

    it('are in the chart as alerts/ holds them (scripts/chart-dashboards)', function () {
      assert.deepEqual(fs.readdirSync(path.join(CHART_DIR, 'alerts')), ['bpfnet-exporter.rules.yaml']);
      assert.ok(
        fs.readFileSync(path.join(CHART_DIR, 'alerts', 'bpfnet-exporter.rules.yaml')).equals(source),
        'alerts/bpfnet-exporter.rules.yaml is out of date: run scripts/chart-dashboards',
      );
    });

    it("become a PrometheusRule whose groups are the rules file's, labelled for the operator", function () {
      const rule = render(allOn).one('PrometheusRule');
      assert.deepEqual(rule.spec, YAML.parse(source.toString('utf8')));
      assert.equal(rule.metadata.name, 'bpfnet-exporter');
      assert.equal(rule.metadata.namespace, 'alerting');
      assert.equal(rule.metadata.labels.release, 'prometheus');
      assert.deepEqual(rule.metadata.annotations, { 'example.com/owner': 'platform' });
      const plain = render({ prometheusRule: { enabled: true } }).one('PrometheusRule');
      assert.equal(plain.metadata.namespace, 'monitoring');
      assert.equal(plain.metadata.annotations, undefined);
      assert.deepEqual(plain.spec, YAML.parse(source.toString('utf8')));
    });
  });
});
