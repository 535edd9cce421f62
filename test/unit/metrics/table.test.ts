// SPDX-License-Identifier: Apache-2.0
// Metrics as data without a kernel: entries as a map read gives them
// (per-CPU values back to back, keys as the C lays them out), labelled and
// turned into samples by the table logic, with the generated layouts.
import assert from 'node:assert/strict';
import { structLayout } from '../../../src/libbpf/binding';
import { TCP_LIFECYCLE } from '../../../src/generated/tcp-lifecycle';
import { NETSTACK } from '../../../src/generated/netstack';
import { histogramSamples, samples, tableEntries, U64_VALUE, type MapTable, type RawEntry } from '../../../src/metrics/table';

const CPUS = 3;
const FAMILY = { label: 'family', values: TCP_LIFECYCLE.enums.family.labels };
const ROLE = { label: 'role', values: TCP_LIFECYCLE.enums.role.labels };

/** A per-CPU value of size bytes a CPU, each CPU's bytes written by fill(buf, cpu). */
function perCpu(size: number, fill: (b: Buffer, cpu: number) => void): Buffer {
  const out = Buffer.alloc(size * CPUS);
  for (let cpu = 0; cpu < CPUS; cpu++) fill(out.subarray(cpu * size, (cpu + 1) * size), cpu);
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

  it('sums a field over CPUs, and sums entries that keep fewer labels', function () {
    const entries = tableEntries(table, raw, size);
    const row = { name: 'r_total', help: 'h', type: 'counter', value: { u64: 'retransmits' } } as const;
    assert.deepEqual(samples(entries, { ...row, labels: ['family', 'role'] }), [
      { labels: { family: 'ipv4', role: 'client' }, value: 3 },
      { labels: { family: 'ipv4', role: 'server' }, value: 6 },
      { labels: { family: 'ipv6', role: 'client' }, value: 9 },
      { labels: { family: 'ipv6', role: 'server' }, value: 12 },
    ]);
    assert.deepEqual(samples(entries, { ...row, labels: ['family'] }), [
      { labels: { family: 'ipv4' }, value: 9 },
      { labels: { family: 'ipv6' }, value: 21 },
    ]);
    assert.deepEqual(samples(entries, { ...row, labels: [] }), [{ labels: {}, value: 30 }]);
  });

  it("reads a histogram's count, sum and slots, summed like the rest", function () {
    const entries = tableEntries(table, raw, size);
    const count = samples(entries, { name: 'c_total', help: 'h', type: 'counter', labels: ['family'], value: { histCount: 'lifetime_ns' } });
    assert.deepEqual(count, [
      { labels: { family: 'ipv4' }, value: 2 },
      { labels: { family: 'ipv6' }, value: 2 },
    ]);
    const sum = samples(entries, { name: 's_total', help: 'h', type: 'counter', labels: ['family'], value: { histSum: 'lifetime_ns' } });
    assert.deepEqual(sum, [
      { labels: { family: 'ipv4' }, value: 8 + 16 },
      { labels: { family: 'ipv6' }, value: 32 + 64 },
    ]);
    const h = histogramSamples(entries, {
      name: 'h_seconds',
      help: 'h',
      type: 'histogram',
      labels: ['family'],
      value: { hist: 'lifetime_ns', minExp: 0, maxExp: 10, scale: 1 },
    });
    assert.deepEqual(h[1]!.labels, { family: 'ipv6' });
    assert.deepEqual(
      h[1]!.slots.flatMap((n, i) => (n ? [[i, n]] : [])),
      [
        [5, 1],
        [6, 1],
      ],
    );
    assert.equal(h[1]!.sum, 96);
  });

  it('expands an array field by its enum, and tells several fields apart by a label', function () {
    const stats = structLayout(TCP_LIFECYCLE, 'connect_stats');
    const s = TCP_LIFECYCLE.structs.connect_stats.size;
    const entries = tableEntries(
      { map: () => undefined, value: () => stats, index: () => [FAMILY], metrics: [] },
      [0, 1].map((f) => ({
        value: perCpu(s, (b) => [1, 2, 3, 4].forEach((n, r) => b.writeBigUInt64LE(BigInt(n * (f + 1)), stats.offset('results') + 8 * r))),
      })),
      s,
    );
    const results = TCP_LIFECYCLE.enums.connect_result.labels;
    assert.deepEqual(
      samples(entries, {
        name: 'x_total',
        help: 'h',
        type: 'counter',
        labels: ['family', 'result'],
        value: { array: 'results', label: 'result', values: results },
      })
        .filter((x) => x.labels.family === 'ipv6')
        .map((x) => [x.labels.result, x.value]),
      [
        ['established', 6],
        ['refused', 12],
        ['timeout', 18],
        ['aborted', 24],
      ],
    );
    const tcp = structLayout(NETSTACK, 'tcp_event_stats');
    const t = NETSTACK.structs.tcp_event_stats.size;
    const tcpEntries = tableEntries(
      { map: () => undefined, value: () => tcp, index: () => [FAMILY], metrics: [] },
      [0, 1].map(() => ({
        value: perCpu(t, (b) => {
          b.writeBigUInt64LE(1n, tcp.offset('resets_received'));
          b.writeBigUInt64LE(2n, tcp.offset('resets_sent'));
        }),
      })),
      t,
    );
    assert.deepEqual(
      samples(tcpEntries, {
        name: 'r_total',
        help: 'h',
        type: 'counter',
        labels: ['family', 'direction'],
        value: { fields: { rx: 'resets_received', tx: 'resets_sent' }, label: 'direction' },
      }).slice(0, 2),
      [
        { labels: { family: 'ipv4', direction: 'rx' }, value: 3 },
        { labels: { family: 'ipv4', direction: 'tx' }, value: 6 },
      ],
    );
  });

  it("labels a hash map's entries by key fields, formatted, and by a string the value keeps on one CPU", function () {
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
    const entries = tableEntries(
      t,
      [
        { key: k(0, 8080, 'nginx'), value: count(5) },
        { key: k(1, 0, ''), value: count(0) },
        { key: k(7, 22, 'a-command-of-16b'), value: count(1) },
      ],
      8,
    );
    const row = {
      name: 'a_total',
      help: 'h',
      type: 'counter',
      labels: ['family', 'port', 'comm'],
      value: { u64: 'value' },
      keep: (labels: Record<string, string>, value: number) => labels.port !== 'other' || value > 0,
    } as const;
    assert.deepEqual(samples(entries, row), [
      { labels: { family: 'ipv4', port: '8080', comm: 'nginx' }, value: 5 },
      { labels: { family: 'unknown', port: '22', comm: 'a-command-of-16b' }, value: 1 },
    ]);

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
