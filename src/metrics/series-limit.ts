// SPDX-License-Identifier: Apache-2.0
// A bound on series per metric family (--max-series): the first label sets
// seen keep their series; label sets beyond the bound are folded into one
// whose workload labels say "other", and counted. A label set keeps its
// place (its own series, or folded) for as long as it is seen, so no
// counter moves between series; one no longer seen frees its place.
//   max 2: {pod="a"} {pod="b"} {pod="c"} -> {pod="a"} {pod="b"} {pod="other"}
import type { Labels } from './collected';

export const OTHER = 'other';

/** Where a label set stands: a series of its own or folded, as of a scrape. */
interface Place {
  folded: boolean;
  seen: number;
}

interface Family {
  places: Map<string, Place>;
  /** label sets with a series of their own */
  admitted: number;
  scrape: number;
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
      f = { places: new Map(), admitted: 0, scrape: 0, count: 0, logged: false };
      this.families.set(metric, f);
    }
    const scrape = ++f.scrape;
    for (const s of samples) {
      const p = f.places.get(s.key);
      if (p) p.seen = scrape;
    }
    // a set no longer seen frees its place first
    for (const [key, p] of f.places) {
      if (p.seen === scrape) continue;
      f.places.delete(key);
      if (!p.folded) f.admitted--;
    }
    const out: S[] = [];
    /** the "other" samples shown, by key */
    const others = new Map<string, S>();
    const folded: S[] = [];
    for (const s of samples) {
      // already "other" (counted in the kernel beyond its map's size): no
      // place of its own, never folded
      if (this.isOther(s.labels)) {
        if (!empty(s)) {
          out.push(s);
          others.set(s.key, s);
        }
        continue;
      }
      let p = f.places.get(s.key);
      if (!p) {
        p = { folded: f.admitted >= this.max, seen: scrape };
        f.places.set(s.key, p);
        if (!p.folded) f.admitted++;
        else {
          f.count++;
          if (!f.logged) {
            f.logged = true;
            this.onFirstFold(metric);
          }
        }
      }
      if (p.folded) folded.push(s);
      else out.push(s);
    }
    for (const s of folded) {
      const target = foldInto(s);
      let into = others.get(target.key);
      if (!into) {
        into = target;
        out.push(into);
        others.set(into.key, into);
      }
      merge(into, s);
    }
    return out;
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
    let present = false;
    for (const l of this.foldLabels) {
      if (!(l in labels)) continue;
      if (labels[l] !== OTHER) return false;
      present = true;
    }
    return present;
  }
}
