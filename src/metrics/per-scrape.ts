// SPDX-License-Identifier: Apache-2.0
// One read per scrape for the metrics that share it.

/** Memoizes a read for the rest of the current scrape (one turn of the event
 * loop: src/metrics/exposition.ts renders every map-backed metric in one),
 * so metrics fed by one map read it once per scrape. */
export function perScrape<T>(read: () => T): () => T {
  let cached: { value: T } | undefined;
  return () => {
    if (!cached) {
      cached = { value: read() };
      setImmediate(() => (cached = undefined));
    }
    return cached.value;
  };
}
