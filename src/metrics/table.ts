// SPDX-License-Identifier: Apache-2.0
// Metrics as data: a BPF map, how its entries become label sets (an array
// map's index split over enums, a hash map's key fields, strings kept in the
// value), and the metrics read from each entry's value, as a table. Each map
// is read once per scrape; entries that end up with the same labels (a
// metric that keeps fewer labels than the map has) are summed. An entry's
// labels are kept from scrape to scrape (derived again when what they come
// from changes), and so is each series' text, written again only when its
// values change: a large scrape is mostly a copy of what the last one wrote.
//   { name: 'bpfnet_tcp_connects_total', labels: ['family', 'result'],
//     value: { array: 'results', label: 'result', values: CONNECT_RESULTS } }
import type { Registry } from 'prom-client';
import { cString, Layout, sumPerCpu, type BpfMap } from '../libbpf';
import type { Labels } from './collected';
import { formatValue, header, labelPairs, type Exposed, type Format } from './exposition';
import { bucketBound, cumulativeBuckets, HIST_SLOTS } from './log2-histogram';
import { perScrape } from './per-scrape';
import type { SeriesLimit } from './series-limit';
import { validateNames, type ScrapeFailures } from './validate';

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
    /** changes whenever derive may give other labels for a key than before */
    version?: () => number;
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
  const state = new TableState(t);
  for (const row of t.metrics) registry.registerMetric(new TableMetric(row, state, t, failures) as never);
}

/** A map entry as read: its key (hash maps) and its per-CPU values back to back. */
export interface RawEntry {
  key?: Buffer;
  value: Buffer;
}

/** An entry with its labels and this scrape's value, kept from scrape to scrape. */
export interface Entry {
  labels: Labels;
  /** the key's version (MapTable.key.version) and the value's strings the labels were made with */
  made: string;
  /** the scrape that last read it */
  seen: number;
  value: Buffer;
  /** per metric: the series it counts into */
  series: Series[][];
}

/** The entries of a table's map, labelled. */
export class TableState<F extends string, K extends string> {
  private readonly entries = new Map<string, Entry>();
  private readonly retired: Retired;
  /** this scrape's entries: every metric of the table reads the map once a scrape */
  readonly current = perScrape(() => this.read());
  /** scrapes so far: a series or entry not seen in the current one is dropped */
  scrape = 0;
  stride = 0;

  constructor(private readonly t: MapTable<F, K>) {
    if (!t.index && !t.key) throw new Error('a table needs an index or a key');
    this.retired = new Retired(t.key?.retiredTtlMs ?? 10 * 60_000);
  }

  /** This scrape's entries (read from the map, and retired ones). */
  read(): Entry[] {
    const map = this.t.map();
    if (!map) return [];
    this.stride = map.stride;
    const raw = readMap(this.t, map);
    const live = this.t.key?.retire ? this.retire(map, raw) : raw;
    const entries = this.label(live, map.stride);
    return this.t.key?.retire ? this.retired.merged(entries, Date.now(), this.scrape) : entries;
  }

  /** Labels each entry: by its position for an array map (split over the
   * index dimensions), by its key for a hash map, and by the value's strings. */
  label(raw: readonly RawEntry[], stride: number): Entry[] {
    const scrape = ++this.scrape;
    const layout = this.t.value();
    const version = String(this.t.key?.version?.() ?? 0);
    const valueLabels = Object.entries(this.t.valueLabels ?? {}) as [string, F][];
    const out = raw.map(({ key, value }, i) => {
      const strings = valueLabels.map(([, field]) => firstString(value, stride, layout, field));
      const made = strings.length ? `${version}\0${strings.join('\0')}` : version;
      const id = key ? key.toString('latin1') : String(i);
      let e = this.entries.get(id);
      if (!e || e.made !== made) {
        const labels = key ? this.keyLabels(key) : this.indexLabels(i);
        valueLabels.forEach(([label], j) => (labels[label] = strings[j]!));
        e = { labels, made, seen: scrape, value, series: [] };
        this.entries.set(id, e);
      }
      e.seen = scrape;
      e.value = value;
      return e;
    });
    for (const [id, e] of this.entries) if (e.seen !== scrape) this.entries.delete(id);
    return out;
  }

  private indexLabels(i: number): Labels {
    const labels: Labels = {};
    const dims = this.t.index!();
    let rest = i;
    for (let d = dims.length - 1; d >= 0; d--) {
      const n = dims[d]!.values.length;
      labels[dims[d]!.label] = dims[d]!.values[rest % n]!;
      rest = Math.floor(rest / n);
    }
    return labels;
  }

  private keyLabels(key: Buffer): Labels {
    const k = this.t.key!;
    const reader = new KeyReader(key, k.layout());
    const labels: Labels = {};
    for (const [label, l] of Object.entries(k.labels)) {
      const v = l.type === 'string' ? reader.string(l.field) : reader.u(l.field, { u8: 1, u16: 2, u32: 4 }[l.type] as 1 | 2 | 4);
      labels[label] = l.format ? l.format(v) : String(v);
    }
    return k.derive ? Object.assign(labels, k.derive(reader)) : labels;
  }

  /** Takes the entries retire() picks out of the map (deleting them there)
   * into the retired ones; returns the others. */
  private retire(map: BpfMap, raw: RawEntry[]): RawEntry[] {
    const layout = this.t.key!.layout();
    const live: RawEntry[] = [];
    const gone: RawEntry[] = [];
    for (const e of raw) (this.t.key!.retire!(new KeyReader(e.key!, layout)) ? gone : live).push(e);
    const now = Date.now();
    for (const e of gone) {
      // labelled before they leave the map: their labels are what they keep
      const labels = this.keyLabels(e.key!);
      // a program that looked the entry up just before counts into the
      // deleted copy: at most an event or two, of a cgroup already gone
      if (map.delete(e.key!)) this.retired.add(labels, e.value, map.stride, now);
    }
    return live;
  }
}

function readMap<F extends string, K extends string>(t: MapTable<F, K>, map: BpfMap): RawEntry[] {
  if (!t.index) return map.entries();
  const count = t.index().reduce((n, d) => n * d.values.length, 1);
  return Array.from({ length: count }, (_, i) => ({ value: map.at(i) }));
}

/** The string a per-CPU value keeps on whichever CPU created the entry. */
function firstString<F extends string>(value: Buffer, stride: number, layout: Layout<F>, field: F): string {
  for (let base = 0; base < value.length; base += stride) {
    const s = cString(value, base + layout.offset(field), layout.length(field));
    if (s) return s;
  }
  return '';
}

/** A u64 of a map value as a number (exact to 2^53). */
function u64At(b: Buffer, at: number): number {
  return b.readUInt32LE(at + 4) * 0x1_0000_0000 + b.readUInt32LE(at);
}

function sameValues(a: Float64Array, b: Float64Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Adds n u64s at offset at of every CPU's copy of a value into into. */
function addPerCpuArray(into: Float64Array, value: Buffer, stride: number, at: number, n: number): void {
  for (let base = 0; base < value.length; base += stride) {
    const start = value.byteOffset + base + at;
    if (start % 4 !== 0) {
      for (let i = 0; i < n; i++) into[i]! += u64At(value, base + at + 8 * i);
      continue;
    }
    // a view instead of a read call per half: the histograms' slots are most of a scrape's reading
    const words = new Uint32Array(value.buffer, start, 2 * n);
    for (let i = 0; i < n; i++) into[i]! += words[2 * i + 1]! * 0x1_0000_0000 + words[2 * i]!;
  }
}

/** One series of a metric (one label set), its values summed over the
 * entries that have its labels, and its lines as last written. */
export interface Series {
  /** its label pairs as written: tells it apart from the metric's other series */
  key: string;
  labels: Labels;
  /** the scrape it was last counted in */
  seen: number;
  /** a counter or gauge: [value]; a histogram: its slots, then its sum */
  values: Float64Array;
  lines?: Buffer;
  /** the values lines shows */
  linesOf?: Float64Array;
  /** beyond --max-series: the series it is counted in */
  foldsInto?: Series;
}

/** One metric of a table: its series, written as text. */
export class TableMetric<F extends string> implements Exposed {
  readonly name: string;
  readonly type: string;
  private readonly series = new Map<string, Series>();
  private readonly index: number;
  /** the series of the last scrape: a scrape at the same time (sharing its read) says the same */
  private last: { entries: readonly Entry[]; shown: Series[] } | undefined;
  private lastBody: { series: readonly Series[]; text: Buffer } | undefined;
  private readonly histogram: { minExp: number; maxExp: number; scale: number; le: readonly string[] } | undefined;

  constructor(
    private readonly row: MetricRow<F>,
    private readonly table: TableState<F, string>,
    private readonly t: MapTable<F, string>,
    private readonly failures: ScrapeFailures,
  ) {
    const v = row.value;
    validateNames(row.name, row.labels, row.help);
    if (row.type === 'counter' && !row.name.endsWith('_total')) throw new Error(`counter ${row.name} must end in _total`);
    if ('hist' in v !== (row.type === 'histogram')) throw new Error(`${row.name}: a histogram, and only a histogram, reads a { hist } value`);
    if ('hist' in v) {
      if (row.labels.includes('le')) throw new Error(`histogram ${row.name} cannot have a label le`);
      if (!(v.minExp >= 0 && v.minExp <= v.maxExp && v.maxExp < HIST_SLOTS)) {
        throw new Error(`histogram ${row.name}: bucket exponents must satisfy 0 <= min <= max < ${HIST_SLOTS}`);
      }
      const le: string[] = [];
      for (let e = v.minExp; e <= v.maxExp; e++) le.push(`le="${bucketBound(e, v.scale)}"} `);
      this.histogram = { minExp: v.minExp, maxExp: v.maxExp, scale: v.scale, le: [...le, 'le="+Inf"} '] };
    }
    this.name = row.name;
    this.type = row.type;
    this.index = t.metrics.indexOf(row);
  }

  expose(format: Format): Buffer[] {
    const head = Buffer.from(header(this.name, this.row.type, this.row.help, format));
    try {
      return [head, this.body(this.collect(this.table.current()))];
    } catch (err) {
      this.failures.record(this.name, err as Error);
      return [head];
    }
  }

  /** The lines of these series, one piece: the last scrape's when they are
   * the same series with the same values (most scrapes, most metrics). */
  private body(shown: readonly Series[]): Buffer {
    const last = this.lastBody;
    let same = last !== undefined && last.series.length === shown.length;
    const pieces = shown.map((s, i) => {
      const was = s.lines;
      const now = this.lines(s);
      if (now !== was || last?.series[i] !== s) same = false;
      return now;
    });
    if (same) return last!.text;
    this.lastBody = { series: shown, text: Buffer.concat(pieces) };
    return this.lastBody.text;
  }

  /** This scrape's series from the labelled entries: summed, limited (MapTable.limit) and kept (MetricRow.keep). */
  collect(entries: readonly Entry[]): Series[] {
    if (this.last?.entries === entries) return this.last.shown;
    const { scrape, stride } = this.table;
    const counted: Series[] = [];
    const touch = (s: Series): Series => {
      if (s.seen !== scrape) {
        s.seen = scrape;
        s.values.fill(0);
        counted.push(s);
      }
      return s;
    };
    const add = this.adder(stride);
    for (const e of entries) {
      const into = (e.series[this.index] ??= this.seriesOf(e.labels));
      for (const s of into) touch(s);
      add(e, into);
    }
    let shown = counted;
    const limit = this.t.limit;
    if (limit) {
      const empty = (s: Series) => s.values.every((n) => n === 0);
      const merge = (into: Series, from: Series) => from.values.forEach((n, i) => (into.values[i]! += n));
      shown = limit.apply(this.name, counted, (s) => touch(this.foldTarget(s, limit)), merge, empty);
    }
    if (this.row.keep) shown = shown.filter((s) => this.row.keep!(s.labels, s.values[0]!));
    // a series none of this scrape's entries counted into is gone
    for (const [key, s] of this.series) if (s.seen !== scrape) this.series.delete(key);
    this.last = { entries, shown };
    return shown;
  }

  /** How an entry's value adds into its series (one, or one per element of an array or set of fields). */
  private adder(stride: number): (e: Entry, into: Series[]) => void {
    const v = this.row.value;
    const layout = this.t.value();
    const sum = (e: Entry, at: number) => sumPerCpu(e.value, stride, at);
    if ('u64' in v) {
      const at = layout.offset(v.u64);
      return (e, [s]) => (s!.values[0]! += sum(e, at));
    }
    if ('array' in v) {
      const at = layout.offset(v.array);
      return (e, into) => into.forEach((s, i) => (s.values[0]! += sum(e, at + 8 * i)));
    }
    if ('fields' in v) {
      const at = Object.values(v.fields).map((f) => layout.offset(f));
      return (e, into) => into.forEach((s, i) => (s.values[0]! += sum(e, at[i]!)));
    }
    const field = 'hist' in v ? v.hist : 'histCount' in v ? v.histCount : v.histSum;
    const h = layout.nested(field);
    const slots = layout.offset(field) + h.offset('slots');
    const total = layout.offset(field) + h.offset('sum');
    const n = h.length('slots');
    if ('histSum' in v) return (e, [s]) => (s!.values[0]! += sum(e, total));
    if ('histCount' in v) {
      const counts = new Float64Array(n);
      return (e, [s]) => {
        counts.fill(0);
        addPerCpuArray(counts, e.value, stride, slots, n);
        for (let i = 0; i < n; i++) s!.values[0]! += counts[i]!;
      };
    }
    return (e, [s]) => {
      addPerCpuArray(s!.values, e.value, stride, slots, n);
      s!.values[HIST_SLOTS]! += sum(e, total);
    };
  }

  /** The series an entry with these labels counts into. */
  private seriesOf(labels: Labels): Series[] {
    const v = this.row.value;
    if ('array' in v) return v.values.map((value) => this.seriesFor({ ...labels, [v.label]: value }));
    if ('fields' in v) return Object.keys(v.fields).map((value) => this.seriesFor({ ...labels, [v.label]: value }));
    return [this.seriesFor(labels)];
  }

  /** The series a folded one counts into: found once, kept while it is this metric's. */
  private foldTarget(s: Series, limit: SeriesLimit): Series {
    if (s.foldsInto && this.series.get(s.foldsInto.key) === s.foldsInto) return s.foldsInto;
    return (s.foldsInto = this.seriesFor(limit.foldedLabels(s.labels)));
  }

  private seriesFor(labels: Labels): Series {
    const key = labelPairs(this.row.labels, labels);
    let s = this.series.get(key);
    if (!s) {
      const picked: Labels = {};
      for (const l of this.row.labels) picked[l] = labels[l] ?? '';
      s = { key, labels: picked, seen: 0, values: new Float64Array(this.histogram ? HIST_SLOTS + 1 : 1) };
      this.series.set(key, s);
    }
    return s;
  }

  /** A series' lines: written again only when its values changed. */
  private lines(s: Series): Buffer {
    if (s.lines && sameValues(s.linesOf!, s.values)) return s.lines;
    let text = '';
    const h = this.histogram;
    if (!h) {
      text = `${this.name}${s.key ? `{${s.key}}` : ''} ${formatValue(s.values[0]!)}\n`;
    } else {
      // le last, as scrapers print it
      const bucket = `${this.name}_bucket{${s.key ? `${s.key},` : ''}`;
      const { buckets, count } = cumulativeBuckets(s.values.subarray(0, HIST_SLOTS), h.minExp, h.maxExp);
      buckets.forEach((n, i) => (text += `${bucket}${h.le[i]}${n}\n`));
      const braces = s.key ? `{${s.key}}` : '';
      text += `${bucket}${h.le[buckets.length]}${count}\n`;
      text += `${this.name}_sum${braces} ${formatValue(s.values[HIST_SLOTS]! / h.scale)}\n`;
      text += `${this.name}_count${braces} ${count}\n`;
    }
    s.lines = Buffer.from(text);
    s.linesOf = s.values.slice();
    return s.lines;
  }
}

/** Values of entries taken out of a map, summed by their labels. */
class Retired {
  private readonly byLabels = new Map<string, Entry & { lastSeen: number }>();

  constructor(private readonly ttlMs: number) {}

  add(labels: Labels, value: Buffer, stride: number, now: number): void {
    const key = JSON.stringify(labels);
    let r = this.byLabels.get(key);
    if (!r) {
      r = { labels, made: '', seen: 0, value: Buffer.alloc(stride), series: [], lastSeen: now };
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
  merged(live: Entry[], now: number, scrape: number): Entry[] {
    if (!this.byLabels.size) return live;
    for (const e of live) {
      const r = this.byLabels.get(JSON.stringify(e.labels));
      if (r) r.lastSeen = now;
    }
    const out = [...live];
    for (const [key, r] of this.byLabels) {
      if (now - r.lastSeen > this.ttlMs) this.byLabels.delete(key);
      else {
        r.seen = scrape;
        out.push(r);
      }
    }
    return out;
  }
}
