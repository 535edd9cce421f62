// SPDX-License-Identifier: Apache-2.0
// /metrics in the Prometheus text format (0.0.4) or OpenMetrics 1.0, written
// here rather than by prom-client: the map-backed metrics render their own
// lines, each series' text kept from scrape to scrape and written again
// only when its values change, so a scrape of hundreds of thousands of
// lines is mostly a copy. prom-client's own metrics (the few the process
// counts itself) are rendered from their get().
//   # HELP bpfnet_tcp_connects_total TCP active opens ...
//   # TYPE bpfnet_tcp_connects_total counter
//   bpfnet_tcp_connects_total{family="ipv4",result="refused"} 3
import type { Registry } from 'prom-client';
import type { Labels } from './collected';

export type Format = 'prometheus' | 'openmetrics';

/** A metric that writes its own lines: its header and its samples, each line ending in a newline. */
export interface Exposed {
  readonly name: string;
  expose(format: Format): Buffer[];
}

function isExposed(m: object): m is Exposed {
  return typeof (m as Partial<Exposed>).expose === 'function';
}

export function escapeHelp(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function escapeLabelValue(s: string): string {
  return /[\\\n"]/.test(s) ? s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : s;
}

/** name="value",... in the given order; a label missing from labels is empty. */
export function labelPairs(names: readonly string[], labels: Labels): string {
  let out = '';
  for (const n of names) out += `${out ? ',' : ''}${n}="${escapeLabelValue(labels[n] ?? '')}"`;
  return out;
}

/** A sample's value as both formats write it. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  return String(v);
}

/** A family's HELP and TYPE lines. OpenMetrics names a counter's family
 * without the _total its samples carry. */
export function header(name: string, type: string, help: string, format: Format): string {
  const family = format === 'openmetrics' && type === 'counter' ? name.replace(/_total$/, '') : name;
  return `# HELP ${family} ${escapeHelp(help)}\n# TYPE ${family} ${type}\n`;
}

/** The whole exposition of a registry, every metric in registration order,
 * in pieces (written out as they are: a large scrape is not copied again
 * into one buffer). */
export async function render(registry: Registry, format: Format): Promise<Buffer[]> {
  // the map-backed metrics all expose in this same turn of the event loop,
  // so that metrics reading one map share a single read of it
  const parts = registry.getMetricsAsArray().map((m) => (isExposed(m) ? m.expose(format) : fromGet(m as unknown as PromClientMetric, format)));
  const chunks: Buffer[] = [];
  for (const p of parts) chunks.push(...(await p));
  if (format === 'openmetrics') chunks.push(Buffer.from('# EOF\n'));
  return chunks;
}

/** What a prom-client metric's get() gives. */
interface PromClientMetric {
  get(): Promise<{
    name: string;
    help: string;
    type: string;
    values: { labels: Readonly<Record<string, string | number>>; value: number; metricName?: string }[];
  }>;
}

/** A prom-client metric's lines, from its get(). */
async function fromGet(m: PromClientMetric, format: Format): Promise<Buffer[]> {
  const got = await m.get();
  let text = header(got.name, got.type, got.help, format);
  for (const v of got.values) {
    const labels: Labels = {};
    for (const [k, l] of Object.entries(v.labels)) labels[k] = String(l);
    const pairs = labelPairs(Object.keys(labels), labels);
    const name = v.metricName ?? (format === 'openmetrics' && got.type === 'counter' && !got.name.endsWith('_total') ? `${got.name}_total` : got.name);
    text += `${name}${pairs ? `{${pairs}}` : ''} ${formatValue(v.value)}\n`;
  }
  return [Buffer.from(text)];
}
