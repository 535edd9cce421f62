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
import type { SeriesLimit } from './series-limit';
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

/** A hash map key's fields, by name. */
export class KeyReader<K extends string> {
  constructor(
    private readonly key: Buffer,
    private readonly layout: Layout<K>,
  ) {}

  u(field: K, bytes: 1 | 2 | 4): number {
    return this.key.readUIntLE(this.layout.offset(field), bytes);
  }

  u64(field: K): bigint {
    return this.key.readBigUInt64LE(this.layout.offset(field));
  }

  string(field: K): string {
    return cString(this.key, this.layout.offset(field), this.layout.length(field));
  }
}

export interface MapTable<F extends string, K extends string = string> {
  /** the map, read at scrape time; undefined: none now (its object stopping), no samples */
  map: () => BpfMap | undefined;
  /** the struct of its values */
  value: () => Layout<F>;
  /** an array map: what its index means; read: every index the dimensions span */
  index?: () => readonly IndexDimension[];
  /** a hash map: labels from its key */
  key?: {
    layout: () => Layout<K>;
    labels: Readonly<Record<string, KeyLabel<K>>>;
    /** labels computed from the whole key (a cgroup id to its workload) */
    derive?: (k: KeyReader<K>) => Labels;
    /** entries to take out of the map, their counts kept by userspace under
     * their labels (the owner of the key is gone: a deleted cgroup), until
     * no entry of the map has had those labels for retiredTtlMs; its values
     * must be u64 fields only */
    retire?: (k: KeyReader<K>) => boolean;
    retiredTtlMs?: number;
  };
  /** at most so many series per metric; the rest folded (series-limit.ts) */
  limit?: SeriesLimit;
  /** labels from a string the value keeps (on the CPU that created the entry) */
  valueLabels?: Readonly<Record<string, F>>;
  metrics: readonly MetricRow<F>[];
}

/** Registers every metric of a table. */
export function registerTable<F extends string, K extends string>(t: MapTable<F, K>, registry: Registry, failures: ScrapeFailures): void {
  const retired = new Retired(t.key?.retiredTtlMs ?? 10 * 60_000);
  const read = perScrape(() => {
    const map = t.map();
    if (!map) return [];
    const raw = readMap(t, map);
    const live = t.key?.retire ? retireEntries(t, map, raw, retired) : raw;
    const entries = tableEntries(t, live, map.stride);
    return t.key?.retire ? retired.merged(entries, t.value(), Date.now()) : entries;
  });
  for (const row of t.metrics) {
    const common = { name: row.name, help: row.help, labelNames: row.labels, registry, failures };
    const v = row.value;
    if ('hist' in v) {
      if (row.type !== 'histogram') throw new Error(`${row.name}: a histogram field makes a histogram`);
      const collect = () => histogramSamples(read(), row, t.limit);
      new Log2Histogram({ ...common, minExp: v.minExp, maxExp: v.maxExp, scale: v.scale, collect });
      continue;
    }
    if (row.type === 'histogram') throw new Error(`${row.name}: a histogram needs a { hist } value`);
    const collect = () => samples(read(), row, t.limit);
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
      const reader = new KeyReader(key!, keyLayout!);
      for (const [label, k] of keyLabels) {
        const v = k.type === 'string' ? reader.string(k.field) : reader.u(k.field, { u8: 1, u16: 2, u32: 4 }[k.type] as 1 | 2 | 4);
        labels[label] = k.format ? k.format(v) : String(v);
      }
      if (t.key?.derive) Object.assign(labels, t.key.derive(reader));
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
export function samples<F extends string>(entries: readonly TableEntry<F>[], row: MetricRow<F>, limit?: SeriesLimit): Sample[] {
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
  const kept = [...sums.values()].filter((s) => !row.keep || row.keep(s.labels, s.value));
  return limit
    ? limit.apply(
        row.name,
        kept,
        (into, from) => (into.value += from.value),
        (s) => s.value === 0,
      )
    : kept;
}

/** A histogram's samples from the labelled entries. */
export function histogramSamples<F extends string>(entries: readonly TableEntry<F>[], row: MetricRow<F>, limit?: SeriesLimit): Log2Sample[] {
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
  const all = [...sums.values()];
  return limit ? limit.apply(row.name, all, mergeHist, (s) => s.slots.every((n) => n === 0)) : all;
}

function mergeHist(into: Log2Sample, from: Log2Sample): void {
  // (into's slots are a copy made when summing: histogramSamples)
  const slots = into.slots as number[];
  from.slots.forEach((n, i) => (slots[i] = (slots[i] ?? 0) + n));
  into.sum += from.sum;
}

/** Takes the entries retire() picks out of the map (deleting them there)
 * and keeps their values in retired; returns the others. */
function retireEntries<F extends string, K extends string>(t: MapTable<F, K>, map: BpfMap, raw: RawEntry[], retired: Retired): RawEntry[] {
  const layout = t.key!.layout();
  const live: RawEntry[] = [];
  const gone: RawEntry[] = [];
  for (const e of raw) (t.key!.retire!(new KeyReader(e.key!, layout)) ? gone : live).push(e);
  if (!gone.length) return live;
  // labelled before they leave the map: their labels are what they keep
  const now = Date.now();
  for (const entry of tableEntries(t, gone, map.stride).map((e, i) => ({ e, raw: gone[i]! }))) {
    // a program that looked the entry up just before counts into the
    // deleted copy: at most an event or two, of a cgroup already gone
    if (!map.delete(entry.raw.key!)) continue;
    retired.add(entry.e.labels, entry.raw.value, map.stride, now);
  }
  return live;
}

/** Values of entries taken out of a map, summed by their labels. */
class Retired {
  private readonly byLabels = new Map<string, { labels: Labels; value: Buffer; lastSeen: number }>();

  constructor(private readonly ttlMs: number) {}

  add(labels: Labels, value: Buffer, stride: number, now: number): void {
    const key = JSON.stringify(labels);
    let r = this.byLabels.get(key);
    if (!r) {
      r = { labels, value: Buffer.alloc(stride), lastSeen: now };
      this.byLabels.set(key, r);
    }
    // every field is a u64: sum word by word, over CPUs too
    for (let base = 0; base < value.length; base += stride) {
      for (let at = 0; at + 8 <= stride; at += 8) {
        r.value.writeBigUInt64LE(BigInt.asUintN(64, r.value.readBigUInt64LE(at) + value.readBigUInt64LE(base + at)), at);
      }
    }
  }

  /** The live entries and the retired ones; forgets retired labels no live
   * entry has had for ttlMs. */
  merged<F extends string>(live: TableEntry<F>[], layout: Layout<F>, now: number): TableEntry<F>[] {
    if (!this.byLabels.size) return live;
    for (const e of live) {
      const r = this.byLabels.get(JSON.stringify(e.labels));
      if (r) r.lastSeen = now;
    }
    const out = [...live];
    for (const [key, r] of this.byLabels) {
      if (now - r.lastSeen > this.ttlMs) this.byLabels.delete(key);
      else out.push({ labels: r.labels, stats: new PerCpuValue(r.value, r.value.length, layout) });
    }
    return out;
  }
}
