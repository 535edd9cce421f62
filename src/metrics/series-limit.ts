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

  /** The samples of a family with those beyond the bound folded, merged
   * by merge into the sample foldInto gives (labels as foldedLabels makes
   * them); "other" samples that count nothing (yet) are left out. A sample's
   * key tells its label set apart from the others'. */
  apply<S extends { key: string; labels: Labels }>(
    metric: string,
    samples: readonly S[],
    foldInto: (s: S) => S,
    merge: (into: S, from: S) => void,
    empty: (s: S) => boolean,
  ): S[] {
    let f = this.families.get(metric);
    if (!f) {
      f = { admitted: new Set(), folded: new Set(), count: 0, logged: false };
      this.families.set(metric, f);
    }
    // a set no longer seen frees its place first
    const seen = new Set(samples.map((s) => s.key));
    for (const key of f.admitted) if (!seen.has(key)) f.admitted.delete(key);
    for (const key of f.folded) if (!seen.has(key)) f.folded.delete(key);
    const out = new Map<string, S>();
    const folded: S[] = [];
    for (const s of samples) {
      // already "other" (counted in the kernel beyond its map's size): no
      // place of its own, never folded
      if (this.isOther(s.labels)) {
        if (!empty(s)) out.set(s.key, s);
        continue;
      }
      if (f.admitted.has(s.key) || (!f.folded.has(s.key) && f.admitted.size < this.max)) {
        f.admitted.add(s.key);
        out.set(s.key, s);
        continue;
      }
      if (!f.folded.has(s.key)) {
        f.folded.add(s.key);
        f.count++;
        if (!f.logged) {
          f.logged = true;
          this.onFirstFold(metric);
        }
      }
      folded.push(s);
    }
    for (const s of folded) {
      const target = foldInto(s);
      const into = out.get(target.key) ?? target;
      out.set(into.key, into);
      merge(into, s);
    }
    return [...out.values()];
  }

  /** The labels a folded set is counted under. */
  foldedLabels(labels: Labels): Labels {
    const out = { ...labels };
    for (const l of this.foldLabels) if (l in out) out[l] = OTHER;
    return out;
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
