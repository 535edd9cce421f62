// SPDX-License-Identifier: Apache-2.0
// The Helm chart (helm/bpfnet-exporter), without helm: its values against its
// schema (with ajv, as Helm checks them), its templates rendered by an engine
// for the Go-template subset it keeps to (test/helpers/go-template.ts), every
// object checked against the Kubernetes API's types and against the others
// (selectors, ports, volumes), the container's arguments run through the
// exporter's own parser and validation, and the dashboards' ConfigMaps
// compared byte for byte with dashboards/.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { LOG_LEVELS } from '../../src/log';
import { DEPRECATED_PROBES, PROBE_NAMES } from '../../src/options';
import {
  allOn,
  allOnHere,
  chart,
  CHART_DIR,
  container,
  DASHBOARDS,
  exporterHelp,
  isSubset,
  NOT_PERMITTED,
  render,
  ROOT,
  runExporter,
  schemaErrors,
  type Obj,
  type Values,
} from '../helpers/chart-check';
import { mergeValues } from '../helpers/helm-chart';
import { checkObject } from '../helpers/k8s-types';

describe('Helm chart', function () {
  describe('values.schema.json', function () {
    it('accepts values.yaml and the all-on values', function () {
      assert.deepEqual(schemaErrors(chart.values), []);
      assert.deepEqual(schemaErrors(mergeValues(chart.values, allOn)), []);
      assert.deepEqual(schemaErrors(mergeValues(chart.values, { exporter: { probes: [], redirect: { enabled: true } } })), [], 'redirect alone');
      assert.deepEqual(schemaErrors(mergeValues(chart.values, { exporter: { spans: { sampleRatio: 0 } } })), []);
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
        errors: ['exporter.probes[1]: must be equal to one of the allowed values'],
        cli: /--probes: unknown probe "tcp"/,
      },
      {
        values: { exporter: { probes: [] } },
        errors: ['exporter.probes: must NOT have fewer than 1 items', 'exporter: must match "then" schema'],
        cli: /--probes is empty/,
      },
      {
        values: { exporter: { probes: ['netstack'], spans: { otlpEndpoint: 'http://otel-collector:4318' } } },
        // ajv words a failed "contains" as each item's mismatch, then the list's
        errors: [
          'exporter.probes[0]: must be equal to one of the allowed values',
          'exporter.probes: must contain at least 1 valid item(s)',
          'exporter: must match "then" schema',
        ],
        cli: /spans come from the TCP probes/,
      },
      {
        values: { exporter: { probes: ['netstack'], sidecars: { comms: ['envoy'] } } },
        errors: [
          'exporter.probes[0]: must be equal to one of the allowed values',
          'exporter.probes: must contain at least 1 valid item(s)',
          'exporter: must match "then" schema',
        ],
        cli: /sidecars are timed by the TCP probes/,
      },
      {
        values: { exporter: { listen: { port: 70000 } } },
        errors: ['exporter.listen.port: must be <= 65535'],
        cli: /--listen 0\.0\.0\.0:70000: not an address/,
      },
      {
        values: { exporter: { listen: { host: '::1' } } },
        errors: ['exporter.listen.host: must match pattern "^(\\[[0-9a-fA-F:.]+\\]|[^:\\[\\]]*)$"'],
        cli: /--listen ::1:9435: not an address/,
      },
      {
        values: { exporter: { spans: { eventRingBytes: 5000 } } },
        errors: ['exporter.spans.eventRingBytes: must be equal to one of the allowed values'],
        cli: /--event-ring-bytes 5000: give a power of two/,
      },
      {
        values: { exporter: { spans: { sampleRatio: 1.5 } } },
        errors: ['exporter.spans.sampleRatio: must be <= 1'],
        cli: /--trace-sample-ratio 1\.5: give a ratio from 0 to 1/,
      },
      {
        values: { exporter: { spans: { otlpEndpoint: 'otel-collector:4318' } } },
        errors: ['exporter.spans.otlpEndpoint: must match pattern "^(|https?://.+)$"'],
        cli: /--otlp-endpoint otel-collector:4318: not http or https/,
      },
      {
        values: { exporter: { logLevel: 'verbose' } },
        errors: ['exporter.logLevel: must be equal to one of the allowed values'],
        cli: /Invalid values: Argument: log-level, Given: "verbose"/,
      },
      {
        values: { exporter: { httpConnectionLimit: 0 } },
        errors: ['exporter.httpConnectionLimit: must be >= 1'],
        cli: /--http-connection-limit 0: give an integer from 1 to/,
      },
      {
        values: { exporter: { acceptPortLimit: 0 } },
        errors: ['exporter.acceptPortLimit: must be >= 1'],
        cli: /--accept-port-limit 0: give an integer from 1 to 65535/,
      },
      { values: { exporter: { netstackSeriesTtl: -1 } }, errors: ['exporter.netstackSeriesTtl: must be >= 0'], cli: /--netstack-series-ttl -1: give seconds/ },
      { values: { exporter: { filters: { pids: [0] } } }, errors: ['exporter.filters.pids[0]: must be >= 1'], cli: /--pid 0: not a process id/ },
      { values: { exporter: { filters: { ports: [0] } } }, errors: ['exporter.filters.ports[0]: must be >= 1'], cli: /--port 0: not a port/ },
      {
        values: { exporter: { sidecars: { comms: ['sixteen-byte-cmd'] } } },
        errors: ['exporter.sidecars.comms[0]: must NOT have more than 15 characters'],
        cli: /--sidecar-comm "sixteen-byte-cmd": give a command name of 1 to 15 bytes/,
      },
      {
        values: { exporter: { redirect: { enabled: true, ports: Array.from({ length: 65 }, (_, i) => 1000 + i) } } },
        errors: ['exporter.redirect.ports: must NOT have more than 64 items'],
        cli: /--redirect-ports: 65 ports; give at most 64/,
      },
      {
        values: { exporter: { redirect: { enabled: true, cgroup: '' } } },
        errors: ['exporter.redirect.cgroup: must NOT have fewer than 1 characters', 'exporter.redirect.cgroup: must match pattern "\\S"'],
        cli: /--redirect-cgroup is missing: name the cgroup/,
      },
      {
        values: { exporter: { redirect: { enabled: true, cgroup: ' ' } } },
        errors: ['exporter.redirect.cgroup: must match pattern "\\S"'],
        cli: /--redirect-cgroup is missing: name the cgroup/,
      },
    ];

    it('rejects what the exporter refuses, naming the key; the exporter refuses it too', async function () {
      const runs = refused.map(async ({ values, errors, cli }) => {
        const merged = mergeValues(chart.values, values);
        assert.deepEqual(schemaErrors(merged), errors, JSON.stringify(values));
        const r = await runExporter(render(values, { skipSchema: true }).one('DaemonSet'));
        assert.equal(r.status, 2, `${JSON.stringify(values)}: ${r.stderr}`);
        assert.match(r.stderr, cli);
      });
      await Promise.all(runs);
    });

    it('rejects what Kubernetes or the exporter cannot work with, naming the key', function () {
      const cases: [Values, string[]][] = [
        [{ exporter: { prob: ['connect'] } }, ['exporter.prob: must NOT have additional properties']],
        [{ exporter: { filters: { ports: ['443'] } } }, ['exporter.filters.ports[0]: must be integer']],
        [{ exporter: { filters: { netns: ['netns-of-a-pod'] } } }, ['exporter.filters.netns[0]: must match pattern "^/[^,]*$"']],
        [{ exporter: { filters: { cgroups: ['a,b'] } } }, ['exporter.filters.cgroups[0]: must match pattern "^[^,]+$"']],
        [{ securityContext: { runAsUser: 1000 } }, ['securityContext.runAsUser: must be equal to constant']],
        [{ securityContext: { runAsNonRoot: true } }, ['securityContext.runAsNonRoot: must be equal to constant']],
        [{ securityContext: { privileged: true } }, ['securityContext.privileged: must NOT have additional properties']],
        [{ bpffsMountPropagation: 'Bidirectional' }, ['bpffsMountPropagation: must NOT be valid', '(root): must match "then" schema']],
        [{ image: { pullPolicy: 'always' } }, ['image.pullPolicy: must be equal to one of the allowed values']],
        [{ serviceMonitor: { interval: '30' } }, ['serviceMonitor.interval: must match pattern "^(|([0-9]+(ms|s|m|h|d|w|y))+)$"']],
        [{ hostPaths: { bpffs: 'sys/fs/bpf' } }, ['hostPaths.bpffs: must match pattern "^/"']],
        [{ service: { port: '9435' } }, ['service.port: must be integer']],
        [{ dashboards: { labelValue: 1 } }, ['dashboards.labelValue: must be string']],
        [{ resources: { limits: { memory: 512 } } }, ['resources.limits.memory: must be string']],
      ];
      for (const [values, errors] of cases) assert.deepEqual(schemaErrors(mergeValues(chart.values, values)), errors, JSON.stringify(values));
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

    it('render the ServiceMonitor and PodMonitor too with everything on', function () {
      const { objects } = render(allOn);
      const kinds = objects.map((o) => `${o.apiVersion} ${o.kind}`).filter((k) => !k.endsWith('ConfigMap'));
      assert.deepEqual(kinds.sort(), [
        'apps/v1 DaemonSet',
        'monitoring.coreos.com/v1 PodMonitor',
        'monitoring.coreos.com/v1 ServiceMonitor',
        'v1 Service',
        'v1 ServiceAccount',
      ]);
    });

    it('give every object a name, the namespace and the chart labels, and core objects only fields of their Kubernetes types', function () {
      for (const values of [{}, allOn]) {
        for (const o of render(values).objects) {
          const what = `${o.kind} ${o.metadata?.name}`;
          assert.match(o.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, what);
          assert.ok(o.metadata.name.length <= 63, what);
          const ns = o.kind === 'ConfigMap' && values === allOn ? 'grafana' : 'monitoring';
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
          if (!o.apiVersion.startsWith('monitoring.coreos.com/')) assert.deepEqual(checkObject(o), [], what);
        }
      }
    });

    it('catch a field Kubernetes does not have', function () {
      const ds = render().one('DaemonSet');
      container(ds).volumeMounts[0].mountpropagation = 'HostToContainer';
      ds.spec.template.spec.hostPid = true;
      ds.spec.template.spec.terminationGracePeriodSeconds = '30';
      assert.deepEqual(checkObject(ds), [
        'DaemonSet.spec.template.spec.terminationGracePeriodSeconds: string where the API has int64',
        'DaemonSet.spec.template.spec.containers[0].volumeMounts[0].mountpropagation: no such field in V1VolumeMount',
        'DaemonSet.spec.template.spec.hostPid: no such field in V1PodSpec',
      ]);
    });

    it('connect the DaemonSet, the Service and the monitors by labels and the metrics port', function () {
      for (const values of [{}, allOn]) {
        const { one } = render(values);
        const ds = one('DaemonSet');
        const pod = ds.spec.template;
        assert.ok(isSubset(ds.spec.selector.matchLabels, pod.metadata.labels), 'the DaemonSet selects its pods');
        const port = values === allOn ? 9436 : 9435;
        assert.deepEqual(container(ds).ports, [{ name: 'metrics', containerPort: port, protocol: 'TCP' }]);
        const svc = one('Service');
        assert.ok(isSubset(svc.spec.selector, pod.metadata.labels), 'the Service selects the pods');
        assert.equal(svc.spec.type, 'ClusterIP');
        assert.deepEqual(svc.spec.ports, [{ name: 'metrics', port: values === allOn ? 9100 : 9435, targetPort: 'metrics', protocol: 'TCP' }]);
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
        '--listen=0.0.0.0:9435',
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
      assert.deepEqual(schemaErrors(mergeValues(chart.values, { exporter: { spans: { protocol: 'grpc' } } })), []);
      assert.deepEqual(schemaErrors(mergeValues(chart.values, { exporter: { spans: { protocol: 'http/thrift' } } })), [
        'exporter.spans.protocol: must be equal to one of the allowed values',
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
      assert.match(plain, /kubectl -n monitoring port-forward ds\/bpfnet-exporter 9435\n/);
      assert.match(plain, /Nothing tells Prometheus to scrape it yet/);
      assert.doesNotMatch(plain, /redirect is on|privileged/);
      const on = render(allOn).notes;
      assert.match(on, /through ServiceMonitor bpfnet-exporter/);
      assert.match(on, /same-host TCP connections of cgroup kubepods\.slice skip/);
      assert.match(on, /runs privileged/);
      assert.match(on, /ConfigMaps labelled grafana_dashboard=1 in namespace grafana/);
    });
  });

  describe('dashboards', function () {
    const sources = fs
      .readdirSync(DASHBOARDS)
      .filter((f) => f.endsWith('.json'))
      .sort();

    it('exist in dashboards/, and the chart holds the same files (scripts/chart-dashboards)', function () {
      assert.ok(sources.length > 0, 'dashboards/*.json');
      const copies = [...chart.files.keys()].filter((p) => p.startsWith('dashboards/')).map((p) => p.slice('dashboards/'.length));
      assert.deepEqual(copies.sort(), sources);
      for (const f of sources)
        assert.ok(chart.files.get(`dashboards/${f}`)!.equals(fs.readFileSync(path.join(DASHBOARDS, f))), `${f} is out of date: run scripts/chart-dashboards`);
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
      const files = new Map(chart.files);
      for (const p of [...files.keys()]) if (p.startsWith('dashboards/')) files.delete(p);
      const text = JSON.stringify(tricky, null, 2) + '\n';
      files.set('dashboards/tricky.json', Buffer.from(text));
      files.set('dashboards/compact.json', Buffer.from(JSON.stringify(tricky) + '\n'));
      const maps = render({}, { chart: { ...chart, files } }).find('ConfigMap');
      assert.deepEqual(
        maps.map((m) => m.metadata.name),
        ['bpfnet-exporter-dashboard-compact', 'bpfnet-exporter-dashboard-tricky'],
      );
      assert.equal(maps[1]!.data['tricky.json'], text);
      assert.equal(maps[0]!.data['compact.json'], JSON.stringify(tricky) + '\n');
    });
  });
});
