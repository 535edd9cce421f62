// SPDX-License-Identifier: Apache-2.0
// Metrics as data: a BPF map, how its entries become label sets (an array
// map's index split over enums, a hash map's key fields, strings kept in the
// value), and the metrics read from each entry's value, as a table. Each map
// is read once per scrape; entries that end up with the same labels (a
// metric that keeps fewer labels than the map has) are summed.
//   { name: 'bpfnet_tcp_connects_total', labels: ['family', 'result'],
//     value: { array: 'results', label: 'result', values: CONNECT_RESULTS } }
import type { Registry } from 'prom-client';
import { cString, Layout, type BpfMap } from '../libbpf';
import { CollectedCounter, CollectedGauge, type Labels, type Sample } from './collected';
import { Log2Histogram, type Log2Sample } from './log2-histogram';
import { PerCpuValue, perScrape } from './per-cpu';
import type { ScrapeFailures } from './validate';

/** The value of a map whose values are one u64 (per CPU), as a struct of one field. */
export const U64_VALUE = new Layout<'value'>('u64', 8, new Map([['value', 0]]), new Map());

/** A part of an array map's index, outermost first: index = ((d0 * n1) + d1) * n2 + d2 ... */
export interface IndexDimension {
  label: string;
  /** the label value of each index value, in C order */
  values: readonly string[];
}

/** A label read from a hash map's key. */
export interface KeyLabel<K extends string> {
  field: K;
  /** how the field is stored: an unsigned integer of 1, 2 or 4 bytes, or a C string */
  type: 'u8' | 'u16' | 'u32' | 'string';
  /** the label value of a field value; default: the number, or the string */
  format?: (v: number | string) => string;
}

/** How a metric's value comes from an entry's value struct. */
export type MetricValue<F extends string> =
  /** a u64 field, summed over CPUs */
  | { u64: F }
  /** a log2 histogram (struct hist) field, exposed as buckets 2^minExp .. 2^maxExp raw units */
  | { hist: F; minExp: number; maxExp: number; scale: number }
  /** the number of values a histogram field counted */
  | { histCount: F }
  /** the sum of the values a histogram field counted */
  | { histSum: F }
  /** a u64 array field: one sample per element, told apart by a label */
  | { array: F; label: string; values: readonly string[] }
  /** several u64 fields, told apart by a label */
  | { fields: Readonly<Record<string, F>>; label: string };

export interface MetricRow<F extends string> {
  name: string;
  help: string;
  /** counter or gauge; a { hist } value makes a histogram */
  type: 'counter' | 'gauge' | 'histogram';
  /** its labels, in order: the entry's, and the one its value adds */
  labels: readonly string[];
  value: MetricValue<F>;
  /** leaves out a sample (an entry kept only as a placeholder) */
  keep?: (labels: Labels, value: number) => boolean;
}

export interface MapTable<F extends string, K extends string = string> {
  /** the map, read at scrape time; undefined: none now (its object stopping), no samples */
  map: () => BpfMap | undefined;
  /** the struct of its values */
  value: () => Layout<F>;
  /** an array map: what its index means; read: every index the dimensions span */
  index?: () => readonly IndexDimension[];
  /** a hash map: labels from its key */
  key?: { layout: () => Layout<K>; labels: Readonly<Record<string, KeyLabel<K>>> };
  /** labels from a string the value keeps (on the CPU that created the entry) */
  valueLabels?: Readonly<Record<string, F>>;
  metrics: readonly MetricRow<F>[];
}

/** Registers every metric of a table. */
export function registerTable<F extends string, K extends string>(t: MapTable<F, K>, registry: Registry, failures: ScrapeFailures): void {
  const read = perScrape(() => {
    const map = t.map();
    return map ? tableEntries(t, readMap(t, map), map.stride) : [];
  });
  for (const row of t.metrics) {
    const common = { name: row.name, help: row.help, labelNames: row.labels, registry, failures };
    const v = row.value;
    if ('hist' in v) {
      if (row.type !== 'histogram') throw new Error(`${row.name}: a histogram field makes a histogram`);
      new Log2Histogram({ ...common, minExp: v.minExp, maxExp: v.maxExp, scale: v.scale, collect: () => histogramSamples(read(), row) });
      continue;
    }
    if (row.type === 'histogram') throw new Error(`${row.name}: a histogram needs a { hist } value`);
    const collect = () => samples(read(), row);
    if (row.type === 'counter') new CollectedCounter({ ...common, collect });
    else new CollectedGauge({ ...common, collect });
  }
}

/** A map entry as read: its key (hash maps) and its per-CPU values back to back. */
export interface RawEntry {
  key?: Buffer;
  value: Buffer;
}

/** An entry with its labels, and its value summed over CPUs. */
export interface TableEntry<F extends string> {
  labels: Labels;
  stats: PerCpuValue<F>;
}

function readMap<F extends string, K extends string>(t: MapTable<F, K>, map: BpfMap): RawEntry[] {
  if (!t.index) return map.entries();
  const count = t.index().reduce((n, d) => n * d.values.length, 1);
  return Array.from({ length: count }, (_, i) => ({ value: map.at(i) }));
}

/** Labels each entry: by its position for an array map (split over the
 * index dimensions), by its key for a hash map, and by the value's strings. */
export function tableEntries<F extends string, K extends string>(t: MapTable<F, K>, raw: readonly RawEntry[], stride: number): TableEntry<F>[] {
  const layout = t.value();
  const dims = t.index?.();
  const keyLayout = t.key?.layout();
  const keyLabels = Object.entries(t.key?.labels ?? {});
  if (!dims && !keyLayout) throw new Error('a table needs an index or a key');
  return raw.map(({ key, value }, i) => {
    const labels: Labels = {};
    if (dims) {
      let rest = i;
      for (let d = dims.length - 1; d >= 0; d--) {
        const n = dims[d]!.values.length;
        labels[dims[d]!.label] = dims[d]!.values[rest % n]!;
        rest = Math.floor(rest / n);
      }
    } else {
      for (const [label, k] of keyLabels) {
        const at = keyLayout!.offset(k.field);
        const v = k.type === 'string' ? cString(key!, at, keyLayout!.length(k.field)) : key!.readUIntLE(at, { u8: 1, u16: 2, u32: 4 }[k.type]);
        labels[label] = k.format ? k.format(v) : String(v);
      }
    }
    for (const [label, field] of Object.entries(t.valueLabels ?? {}) as [string, F][]) labels[label] = firstString(value, stride, layout, field);
    return { labels, stats: new PerCpuValue(value, stride, layout) };
  });
}

/** The string a per-CPU value keeps on whichever CPU created the entry. */
function firstString<F extends string>(value: Buffer, stride: number, layout: Layout<F>, field: F): string {
  for (let base = 0; base < value.length; base += stride) {
    const s = cString(value, base + layout.offset(field), layout.length(field));
    if (s) return s;
  }
  return '';
}

function pick(labels: Labels, names: readonly string[]): Labels {
  const out: Labels = {};
  for (const n of names) out[n] = labels[n] ?? '';
  return out;
}

/** A counter's or gauge's samples from the labelled entries. */
export function samples<F extends string>(entries: readonly TableEntry<F>[], row: MetricRow<F>): Sample[] {
  const v = row.value;
  if ('hist' in v) throw new Error(`${row.name} is a histogram`);
  const sums = new Map<string, Sample>();
  const add = (labels: Labels, value: number) => {
    const picked = pick(labels, row.labels);
    const key = JSON.stringify(picked);
    const s = sums.get(key);
    if (s) s.value += value;
    else sums.set(key, { labels: picked, value });
  };
  for (const { labels, stats } of entries) {
    if ('u64' in v) add(labels, stats.u64(v.u64));
    else if ('histCount' in v)
      add(
        labels,
        stats.hist(v.histCount, labels).slots.reduce((a, b) => a + b, 0),
      );
    else if ('histSum' in v) add(labels, stats.hist(v.histSum, labels).sum);
    else if ('array' in v) stats.array(v.array).forEach((n, i) => add({ ...labels, [v.label]: v.values[i] ?? String(i) }, n));
    else for (const [value, field] of Object.entries(v.fields) as [string, F][]) add({ ...labels, [v.label]: value }, stats.u64(field));
  }
  return [...sums.values()].filter((s) => !row.keep || row.keep(s.labels, s.value));
}

/** A histogram's samples from the labelled entries. */
export function histogramSamples<F extends string>(entries: readonly TableEntry<F>[], row: MetricRow<F>): Log2Sample[] {
  if (!('hist' in row.value)) throw new Error(`${row.name} is no histogram`);
  const field = row.value.hist;
  const sums = new Map<string, { labels: Labels; slots: number[]; sum: number }>();
  for (const { labels, stats } of entries) {
    const picked = pick(labels, row.labels);
    const h = stats.hist(field, picked);
    const key = JSON.stringify(picked);
    const s = sums.get(key);
    if (!s) sums.set(key, { labels: picked, slots: [...h.slots], sum: h.sum });
    else {
      h.slots.forEach((n, i) => (s.slots[i]! += n));
      s.sum += h.sum;
    }
  }
  return [...sums.values()];
}
