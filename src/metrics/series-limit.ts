// SPDX-License-Identifier: Apache-2.0
// A bound on series per metric family (--max-series): the first label sets
// seen keep their series; label sets beyond the bound are folded into one
// whose workload labels say "other", and counted. A label set keeps its
// place (its own series, or folded) for as long as it is seen, so no
// counter moves between series; one no longer seen frees its place.
//   max 2: {pod="a"} {pod="b"} {pod="c"} -> {pod="a"} {pod="b"} {pod="other"}
import type { Labels } from './collected';

export const OTHER = 'other';

interface Family {
  admitted: Set<string>;
  folded: Set<string>;
  /** label sets folded since the start */
  count: number;
  logged: boolean;
}

export class SeriesLimit {
  private readonly families = new Map<string, Family>();

  constructor(
    readonly max: number,
    /** the labels folding sets to "other" */
    readonly foldLabels: readonly string[],
    /** told the first time a family folds */
    private readonly onFirstFold: (metric: string) => void = () => {},
  ) {}

  /** The samples of a family with those beyond the bound folded, merged by
   * merge; "other" samples that count nothing (yet) are left out. */
  apply<S extends { labels: Labels }>(metric: string, samples: S[], merge: (into: S, from: S) => void, empty: (s: S) => boolean): S[] {
    let f = this.families.get(metric);
    if (!f) {
      f = { admitted: new Set(), folded: new Set(), count: 0, logged: false };
      this.families.set(metric, f);
    }
    const keys = samples.map((s) => JSON.stringify(s.labels));
    // a set no longer seen frees its place first
    const seen = new Set(keys);
    for (const key of f.admitted) if (!seen.has(key)) f.admitted.delete(key);
    for (const key of f.folded) if (!seen.has(key)) f.folded.delete(key);
    const out = new Map<string, S>();
    const folded: S[] = [];
    for (const [i, s] of samples.entries()) {
      const key = keys[i]!;
      // already "other" (counted in the kernel beyond its map's size): no
      // place of its own, never folded
      if (this.isOther(s.labels)) {
        if (!empty(s)) out.set(key, s);
        continue;
      }
      if (f.admitted.has(key) || (!f.folded.has(key) && f.admitted.size < this.max)) {
        f.admitted.add(key);
        out.set(key, s);
        continue;
      }
      if (!f.folded.has(key)) {
        f.folded.add(key);
        f.count++;
        if (!f.logged) {
          f.logged = true;
          this.onFirstFold(metric);
        }
      }
      folded.push(s);
    }
    for (const s of folded) {
      const labels = { ...s.labels };
      for (const l of this.foldLabels) if (l in labels) labels[l] = OTHER;
      const key = JSON.stringify(labels);
      const into = out.get(key);
      if (into) merge(into, s);
      else out.set(key, { ...s, labels });
    }
    return [...out.values()];
  }

  /** Label sets folded since the start, by family. */
  foldedCounts(): { metric: string; count: number }[] {
    return [...this.families].map(([metric, f]) => ({ metric, count: f.count }));
  }

  private isOther(labels: Labels): boolean {
    const present = this.foldLabels.filter((l) => l in labels);
    return present.length > 0 && present.every((l) => labels[l] === OTHER);
  }
}
