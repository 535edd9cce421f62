// SPDX-License-Identifier: Apache-2.0
// One object per label set, kept from scrape to scrape. prom-client formats a
// sample's sharedLabels once per object (it caches the text in a WeakMap), so
// handing it the same object every scrape turns label formatting and
// escaping, most of the cost of a large scrape, into a lookup. Label sets of
// map-backed metrics only grow as the kernel maps do, which bounds them.
/** A sample's labels, by name. */
export type Labels = Record<string, string>;

export class LabelSets {
  private readonly sets = new Map<string, Readonly<Labels>>();

  /** The kept object equal to labels (a frozen copy, the first time).
   * Callers give a metric's labels in one order. */
  intern(labels: Labels): Readonly<Labels> {
    // JSON: unambiguous whatever the values hold (a process may name itself anything)
    const key = JSON.stringify(labels);
    let kept = this.sets.get(key);
    if (!kept) {
      kept = Object.freeze({ ...labels });
      this.sets.set(key, kept);
    }
    return kept;
  }
}

/** A sample as prom-client renders it: its labels as shared, pre-formatted ones. */
export interface RenderedSample {
  labels: Labels;
  sharedLabels: Readonly<Labels>;
  value: number;
  metricName?: string;
}

export const NO_LABELS: Labels = Object.freeze({}) as Labels;
