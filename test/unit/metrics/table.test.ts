// SPDX-License-Identifier: Apache-2.0
// Metrics as data without a kernel: entries as a map read gives them
// (per-CPU values back to back, keys as the C lays them out), labelled,
// summed and written as text by the table logic, with the generated layouts.
// The map is a stand-in holding those entries: the integration tests read
// the kernel's.
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { structLayout } from '../../../src/libbpf/binding';
import type { BpfMap } from '../../../src/libbpf';
import { TCP_LIFECYCLE } from '../../../src/generated/tcp-lifecycle';
import { NETSTACK } from '../../../src/generated/netstack';
import { Logger } from '../../../src/log';
import { render } from '../../../src/metrics/exposition';
import { registerTable, TableState, U64_VALUE, type MapTable, type MetricRow, type RawEntry } from '../../../src/metrics/table';
import { ScrapeFailures } from '../../../src/metrics/validate';

const CPUS = 3;
const FAMILY = { label: 'family', values: TCP_LIFECYCLE.enums.family.labels };
const ROLE = { label: 'role', values: TCP_LIFECYCLE.enums.role.labels };

/** A per-CPU value of size bytes a CPU, each CPU's bytes written by fill(buf, cpu). */
function perCpu(size: number, fill: (b: Buffer, cpu: number) => void): Buffer {
  const out = Buffer.alloc(size * CPUS);
  for (let cpu = 0; cpu < CPUS; cpu++) fill(out.subarray(cpu * size, (cpu + 1) * size), cpu);
  return out;
}

/** A map holding raw, as a read of the kernel's would give it. */
function heldMap(raw: () => readonly RawEntry[], stride: number): BpfMap {
  return { stride, entries: () => raw(), at: (i: number) => raw()[i]!.value, delete: () => true } as unknown as BpfMap;
}

/** The entries' labels as a table gives them. */
function tableEntries(t: MapTable<string>, raw: readonly RawEntry[], stride: number) {
  return new TableState(t).label(raw, stride);
}

/** The samples of rows over raw, as /metrics writes them: "name{labels}" to value. */
async function scrape(t: MapTable<string>, raw: readonly RawEntry[], stride: number, rows: readonly MetricRow<string>[]): Promise<Map<string, number>> {
  const registry = new Registry();
  registerTable({ ...t, map: () => heldMap(() => raw, stride), metrics: rows }, registry, new ScrapeFailures(registry, new Logger('error')));
  return samplesOf(await text(registry));
}

/** /metrics, as text. */
async function text(registry: Registry): Promise<string> {
  return Buffer.concat(await render(registry, 'prometheus')).toString();
}

function samplesOf(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n'))
    if (line && !line.startsWith('#')) out.set(line.slice(0, line.lastIndexOf(' ')), Number(line.slice(line.lastIndexOf(' ') + 1)));
  return out;
}

describe('metric tables', function () {
  const close = structLayout(TCP_LIFECYCLE, 'close_stats');
  const hist = structLayout(TCP_LIFECYCLE, 'hist');
  const size = TCP_LIFECYCLE.structs.close_stats.size;
  // tcp_close_stats[family * 2 + role]: entry i retransmitted i + 1 segments on each CPU,
  // and counted one connection of 2^(i + 3) ns in its lifetime histogram on CPU 0
  const raw: RawEntry[] = Array.from({ length: 4 }, (_, i) => ({
    value: perCpu(size, (b, cpu) => {
      b.writeBigUInt64LE(BigInt(i + 1), close.offset('retransmits'));
      if (cpu === 0) {
        const at = close.offset('lifetime_ns');
        b.writeBigUInt64LE(1n, at + hist.offset('slots') + 8 * (i + 3));
        b.writeBigUInt64LE(BigInt(2 ** (i + 3)), at + hist.offset('sum'));
      }
    }),
  }));
  const table: MapTable<string> = {
    map: () => undefined,
    value: () => close,
    index: () => [FAMILY, ROLE],
    metrics: [],
  };

  it("labels an array map's entries by splitting the index over the enums, last fastest", function () {
    const entries = tableEntries(table, raw, size);
    assert.deepEqual(
      entries.map((e) => e.labels),
      [
        { family: 'ipv4', role: 'client' },
        { family: 'ipv4', role: 'server' },
        { family: 'ipv6', role: 'client' },
        { family: 'ipv6', role: 'server' },
      ],
    );
  });

  it('sums a field over CPUs, and sums entries that keep fewer labels', async function () {
    const row = { name: 'r_total', help: 'h', type: 'counter', value: { u64: 'retransmits' } } as const;
    const got = await scrape(table, raw, size, [
      { ...row, labels: ['family', 'role'] },
      { ...row, name: 'f_total', labels: ['family'] },
      { ...row, name: 'a_total', labels: [] },
    ]);
    assert.deepEqual(
      [...got].filter(([k]) => !k.startsWith('bpfnet_')),
      [
        ['r_total{family="ipv4",role="client"}', 3],
        ['r_total{family="ipv4",role="server"}', 6],
        ['r_total{family="ipv6",role="client"}', 9],
        ['r_total{family="ipv6",role="server"}', 12],
        ['f_total{family="ipv4"}', 9],
        ['f_total{family="ipv6"}', 21],
        ['a_total', 30],
      ],
    );
  });

  it("reads a histogram's count, sum and buckets, summed like the rest", async function () {
    const got = await scrape(table, raw, size, [
      { name: 'c_total', help: 'h', type: 'counter', labels: ['family'], value: { histCount: 'lifetime_ns' } },
      { name: 's_total', help: 'h', type: 'counter', labels: ['family'], value: { histSum: 'lifetime_ns' } },
      { name: 'h_seconds', help: 'h', type: 'histogram', labels: ['family'], value: { hist: 'lifetime_ns', minExp: 4, maxExp: 6, scale: 1e9 } },
    ]);
    assert.equal(got.get('c_total{family="ipv4"}'), 2);
    assert.equal(got.get('c_total{family="ipv6"}'), 2);
    assert.equal(got.get('s_total{family="ipv4"}'), 8 + 16);
    assert.equal(got.get('s_total{family="ipv6"}'), 32 + 64);
    // ipv4 counted 2^3 and 2^4 ns (slots 3 and 4): both in the first bucket
    // (2^4 ns; the slots below fold into it), ipv6 2^5 and 2^6 ns
    assert.deepEqual(
      [...got].filter(([k]) => k.startsWith('h_seconds')),
      [
        ['h_seconds_bucket{family="ipv4",le="1.6e-8"}', 2],
        ['h_seconds_bucket{family="ipv4",le="3.2e-8"}', 2],
        ['h_seconds_bucket{family="ipv4",le="6.4e-8"}', 2],
        ['h_seconds_bucket{family="ipv4",le="+Inf"}', 2],
        ['h_seconds_sum{family="ipv4"}', 2.4e-8],
        ['h_seconds_count{family="ipv4"}', 2],
        ['h_seconds_bucket{family="ipv6",le="1.6e-8"}', 0],
        ['h_seconds_bucket{family="ipv6",le="3.2e-8"}', 1],
        ['h_seconds_bucket{family="ipv6",le="6.4e-8"}', 2],
        ['h_seconds_bucket{family="ipv6",le="+Inf"}', 2],
        ['h_seconds_sum{family="ipv6"}', 9.6e-8],
        ['h_seconds_count{family="ipv6"}', 2],
      ],
    );
  });

  it('writes a series again only when its values change, and drops the series of entries gone', async function () {
    const registry = new Registry();
    const keyed = (n: number, value: Buffer) => ({ key: Buffer.from([n, 0, 0, 0, 0, 0, 0, 0]), value });
    let entries = raw.map((e, n) => keyed(n, e.value));
    const row = { name: 'r_total', help: 'h', type: 'counter', labels: ['n'], value: { u64: 'retransmits' } } as const;
    const key = { layout: () => U64_VALUE, labels: { n: { field: 'value', type: 'u32' } } } as const;
    registerTable(
      { ...table, index: undefined, key, map: () => heldMap(() => entries, size), metrics: [row] },
      registry,
      new ScrapeFailures(registry, new Logger('error')),
    );
    const metric = registry.getSingleMetric('r_total') as unknown as { expose(f: 'prometheus'): Buffer[] };
    const expose = async () => {
      const out = metric.expose('prometheus');
      await new Promise((resolve) => setImmediate(resolve)); // the next scrape reads the map again
      return out;
    };
    const [, first] = await expose();
    assert.equal(String(first), 'r_total{n="0"} 3\nr_total{n="1"} 6\nr_total{n="2"} 9\nr_total{n="3"} 12\n');
    const [, again] = await expose();
    assert.equal(again, first, 'the same series with the same values: the same text, not written again');
    // entry 1 counts one more segment on CPU 0, entry 3 is gone
    const more = Buffer.from(raw[1]!.value);
    more.writeBigUInt64LE(3n, close.offset('retransmits'));
    entries = [keyed(0, raw[0]!.value), keyed(1, more), keyed(2, raw[2]!.value)];
    const [, second] = await expose();
    assert.equal(String(second), 'r_total{n="0"} 3\nr_total{n="1"} 7\nr_total{n="2"} 9\n');
    entries = entries.slice(0, 2);
    assert.equal(String((await expose())[1]), 'r_total{n="0"} 3\nr_total{n="1"} 7\n', 'the same values, one series fewer');
  });

  it('labels an entry again when what its labels come from changes', async function () {
    const registry = new Registry();
    let version = 0;
    let name = 'a';
    const entries = [{ key: Buffer.alloc(8), value: raw[0]!.value }];
    const row = { name: 'r_total', help: 'h', type: 'counter', labels: ['pod'], value: { u64: 'retransmits' } } as const;
    const key = { layout: () => U64_VALUE, labels: {}, derive: () => ({ pod: name }), version: () => version } as const;
    registerTable(
      { ...table, index: undefined, key, map: () => heldMap(() => entries, size), metrics: [row] },
      registry,
      new ScrapeFailures(registry, new Logger('error')),
    );
    const pods = async () => {
      // two scrapes at once (one turn of the event loop) share one read of the map, and say the same
      const [a, b] = await Promise.all([text(registry), text(registry)]);
      assert.deepEqual(a, b);
      await new Promise((resolve) => setImmediate(resolve));
      return [...samplesOf(a)].filter(([k]) => k.startsWith('r_'));
    };
    assert.deepEqual(await pods(), [['r_total{pod="a"}', 3]]);
    name = 'b'; // not asked again until the version changes
    assert.deepEqual(await pods(), [['r_total{pod="a"}', 3]]);
    version++;
    assert.deepEqual(await pods(), [['r_total{pod="b"}', 3]]);
  });

  it('keeps a broken read off the scrape, counted', async function () {
    const registry = new Registry();
    const failures = new ScrapeFailures(registry, new Logger('error'));
    const row = {
      name: 'broken_seconds',
      help: 'fails to read',
      type: 'histogram',
      labels: [],
      value: { hist: 'lifetime_ns', minExp: 0, maxExp: 1, scale: 1 },
    } as const;
    const broken = (): BpfMap => {
      throw new Error('map gone');
    };
    registerTable({ ...table, map: broken, metrics: [row] }, registry, failures);
    await text(registry);
    const out = await text(registry); // the second scrape shows the first one's failure
    assert.match(out, /^bpfnet_scrape_errors_total\{metric="broken_seconds"\} [12]$/m);
    assert.match(out, /^# TYPE broken_seconds histogram$/m);
    assert.doesNotMatch(out, /^broken_seconds/m);
  });

  it('refuses bad definitions when built, not when scraped', function () {
    const registry = new Registry();
    const failures = new ScrapeFailures(registry, new Logger('error'));
    const hist = (name: string, labels: string[], minExp: number, maxExp: number) =>
      registerTable(
        { ...table, metrics: [{ name, help: 'h', type: 'histogram', labels, value: { hist: 'lifetime_ns', minExp, maxExp, scale: 1 } }] },
        registry,
        failures,
      );
    assert.throws(() => hist('bad-name', [], 0, 1), /invalid metric name/);
    assert.throws(() => hist('ok', ['le'], 0, 1), /cannot have a label le/);
    assert.throws(() => hist('ok2', [], 5, 4), /bucket exponents/);
    const counter = { name: 'c', help: 'h', type: 'counter', labels: [], value: { u64: 'retransmits' } } as const;
    assert.throws(() => registerTable({ ...table, metrics: [counter] }, registry, failures), /must end in _total/);
  });

  it('expands an array field by its enum, and tells several fields apart by a label', async function () {
    const stats = structLayout(TCP_LIFECYCLE, 'connect_stats');
    const s = TCP_LIFECYCLE.structs.connect_stats.size;
    const results = TCP_LIFECYCLE.enums.connect_result.labels;
    const connects = await scrape(
      { map: () => undefined, value: () => stats, index: () => [FAMILY], metrics: [] },
      [0, 1].map((f) => ({
        value: perCpu(s, (b) => [1, 2, 3, 4].forEach((n, r) => b.writeBigUInt64LE(BigInt(n * (f + 1)), stats.offset('results') + 8 * r))),
      })),
      s,
      [{ name: 'x_total', help: 'h', type: 'counter', labels: ['family', 'result'], value: { array: 'results', label: 'result', values: results } }],
    );
    assert.deepEqual(
      [...connects].filter(([k]) => k.startsWith('x_total{family="ipv6"')),
      [
        ['x_total{family="ipv6",result="established"}', 6],
        ['x_total{family="ipv6",result="refused"}', 12],
        ['x_total{family="ipv6",result="timeout"}', 18],
        ['x_total{family="ipv6",result="aborted"}', 24],
      ],
    );
    const tcp = structLayout(NETSTACK, 'tcp_event_stats');
    const t = NETSTACK.structs.tcp_event_stats.size;
    const resets = await scrape(
      { map: () => undefined, value: () => tcp, index: () => [FAMILY], metrics: [] },
      [0, 1].map(() => ({
        value: perCpu(t, (b) => {
          b.writeBigUInt64LE(1n, tcp.offset('resets_received'));
          b.writeBigUInt64LE(2n, tcp.offset('resets_sent'));
        }),
      })),
      t,
      [
        {
          name: 'r_total',
          help: 'h',
          type: 'counter',
          labels: ['family', 'direction'],
          value: { fields: { rx: 'resets_received', tx: 'resets_sent' }, label: 'direction' },
        },
      ],
    );
    assert.deepEqual(
      [...resets].filter(([k]) => k.startsWith('r_total{family="ipv4"')),
      [
        ['r_total{family="ipv4",direction="rx"}', 3],
        ['r_total{family="ipv4",direction="tx"}', 6],
      ],
    );
  });

  it("labels a hash map's entries by key fields, formatted, and by a string the value keeps on one CPU", async function () {
    const key = structLayout(TCP_LIFECYCLE, 'accept_key');
    const k = (family: number, port: number, comm: string) => {
      const b = Buffer.alloc(TCP_LIFECYCLE.structs.accept_key.size);
      b.writeUInt8(family, key.offset('family'));
      b.writeUInt16LE(port, key.offset('port'));
      b.write(comm, key.offset('comm'));
      return b;
    };
    const count = (n: number) => perCpu(8, (b, cpu) => b.writeBigUInt64LE(BigInt(cpu === 1 ? n : 0)));
    const t: MapTable<'value', string> = {
      map: () => undefined,
      value: () => U64_VALUE,
      key: {
        layout: () => key,
        labels: {
          family: { field: 'family', type: 'u8', format: (f) => FAMILY.values[f as number] ?? 'unknown' },
          port: { field: 'port', type: 'u16', format: (p) => (p === 0 ? 'other' : String(p)) },
          comm: { field: 'comm', type: 'string' },
        },
      },
      metrics: [],
    };
    const entries = [
      { key: k(0, 8080, 'nginx'), value: count(5) },
      { key: k(1, 0, ''), value: count(0) },
      { key: k(7, 22, 'a-command-of-16b'), value: count(1) },
    ];
    const row = {
      name: 'a_total',
      help: 'h',
      type: 'counter',
      labels: ['family', 'port', 'comm'],
      value: { u64: 'value' },
      keep: (labels: Record<string, string>, value: number) => labels.port !== 'other' || value > 0,
    } as const;
    assert.deepEqual(
      [...(await scrape(t, entries, 8, [row]))].filter(([k]) => k.startsWith('a_total')),
      [
        ['a_total{family="ipv4",port="8080",comm="nginx"}', 5],
        ['a_total{family="unknown",port="22",comm="a-command-of-16b"}', 1],
      ],
    );

    const stats = structLayout(NETSTACK, 'drop_stats');
    const dropKey = structLayout(NETSTACK, 'drop_key');
    const d = NETSTACK.structs.drop_stats.size;
    const drop = tableEntries(
      {
        map: () => undefined,
        value: () => stats,
        key: { layout: () => dropKey, labels: { reason: { field: 'reason', type: 'u32', format: (r) => `reason_${r}` } } },
        valueLabels: { ifname: 'ifname' },
        metrics: [],
      },
      [{ key: Buffer.from([1, 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0]), value: perCpu(d, (b, cpu) => void (cpu === 2 && b.write('veth0', stats.offset('ifname')))) }],
      d,
    );
    assert.deepEqual(drop[0]!.labels, { reason: 'reason_9', ifname: 'veth0' });
  });
});
