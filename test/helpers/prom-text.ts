// SPDX-License-Identifier: Apache-2.0
// Reads Prometheus text exposition into samples that tests can look up.
import { WORKLOAD_LABELS } from '../../src/options';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export class Metrics {
  constructor(readonly samples: Sample[]) {}

  /** Samples of a name whose labels include all of `labels`. */
  find(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** The sample of name with exactly these labels (other than le), or 0 if
   * absent; labels that say whose a connection is (WORKLOAD_LABELS), when
   * not given, are summed over: the node's total. */
  value(name: string, labels: Record<string, string> = {}): number {
    const found = this.find(name, labels).filter((s) => Object.keys(s.labels).every((k) => k in labels || WORKLOAD.has(k)));
    const exact = found.filter((s) => Object.keys(s.labels).length === Object.keys(labels).length);
    if (exact.length > 1) throw new Error(`${name}${JSON.stringify(labels)} matches ${exact.length} samples`);
    return found.reduce((a, s) => a + s.value, 0);
  }

  /** Sum over every sample of name whose labels include `labels`. */
  sum(name: string, labels: Record<string, string> = {}): number {
    return this.find(name, labels).reduce((a, s) => a + s.value, 0);
  }

  /** Cumulative bucket counts of a histogram, by le; summed over the
   * workload labels not given, as value() does. */
  buckets(name: string, labels: Record<string, string> = {}): Map<string, number> {
    const out = new Map<string, number>();
    for (const s of this.find(`${name}_bucket`, labels)) {
      if (!Object.keys(s.labels).every((k) => k === 'le' || k in labels || WORKLOAD.has(k))) continue;
      out.set(s.labels.le!, (out.get(s.labels.le!) ?? 0) + s.value);
    }
    return out;
  }
}

const WORKLOAD: ReadonlySet<string> = new Set(WORKLOAD_LABELS);

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (let m = re.exec(text); m; m = re.exec(text)) labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  return labels;
}

export function parseMetrics(text: string): Metrics {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`unparseable metrics line: ${line}`);
    samples.push({ name: m[1]!, labels: m[2] ? parseLabels(m[2]) : {}, value: Number(m[3]) });
  }
  return new Metrics(samples);
}
