// SPDX-License-Identifier: Apache-2.0
// The HTTP endpoints: /metrics (Prometheus text, or OpenMetrics when the
// scraper asks for it), /healthz (the process answers) and /readyz (every
// requested probe is attached).
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Registry, type RegistryContentType } from 'prom-client';
import { EnvironmentError, UsageError } from './errors';
import type { Logger } from './log';

export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses HOST:PORT, [V6]:PORT or :PORT (all interfaces). */
export function parseListen(text: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  const host = m ? (m[1] ?? m[2]) : undefined;
  // a name as DNS has them (RFC 1123), or an address literal
  const name =
    host === '' ||
    (host !== undefined &&
      (net.isIP(host) !== 0 ||
        /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/.test(host)));
  if (!m || port > 65535 || !name) {
    throw new UsageError(`--listen ${text}: not an address; give HOST:PORT, [IPV6]:PORT or :PORT (e.g. 0.0.0.0:9435)`);
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** The content type /metrics answers an Accept header with: OpenMetrics
 * (prom-client writes version 1.0.0) when a media range of the header names
 * application/openmetrics-text, whatever its version and rank, else the
 * classic text format. Ranks are not compared: Prometheus puts OpenMetrics
 * first by default, and a scraper that ranks text/plain higher still gets
 * OpenMetrics. Only q=0, "not acceptable" (RFC 9110, 12.4.2), takes a range
 * out. */
export function metricsContentType(accept: string | undefined): RegistryContentType {
  const openMetrics = (accept ?? '')
    .split(',')
    .some((range) => range.includes('application/openmetrics-text') && !/;\s*q=0(?:\.0{0,3})?\s*(?:;|$)/i.test(range));
  return openMetrics ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE;
}

/** A view of a registry in OpenMetrics format. prom-client's OpenMetrics
 * output renames counters in place, so the view wraps each metric instead of
 * sharing it. */
function openMetricsView(source: Registry): Registry {
  // the typings lack the constructor's content-type argument
  const OpenMetricsRegistry = Registry as unknown as new (contentType: string) => Registry;
  const view = new OpenMetricsRegistry(Registry.OPENMETRICS_CONTENT_TYPE);
  const wrapped = new Set<string>();
  const sync = (): void => {
    for (const metric of source.getMetricsAsArray() as unknown as { name: string; type?: string; get(): Promise<object> }[]) {
      if (wrapped.has(metric.name)) continue;
      wrapped.add(metric.name);
      const wrapper = {
        name: metric.name,
        type: (metric as { type?: string }).type,
        async get() {
          return { ...(await metric.get()), name: wrapper.name };
        },
      };
      view.registerMetric(wrapper as never);
    }
  };
  return Object.assign(view, {
    metrics: ((orig) => () => {
      sync();
      return orig();
    })(view.metrics.bind(view)),
  });
}

export class MetricsServer {
  private constructor(
    private readonly server: http.Server,
    readonly address: ListenAddress,
  ) {}

  static async listen(at: ListenAddress, registry: Registry, readiness: () => { ready: boolean; detail: string }, log: Logger): Promise<MetricsServer> {
    const openMetrics = openMetricsView(registry);
    const server = http.createServer((req, res) => {
      const url = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { Allow: 'GET, HEAD' }).end();
        return;
      }
      const reply = (status: number, type: string, body: string): void => {
        res.writeHead(status, { 'Content-Type': type }).end(req.method === 'HEAD' ? undefined : body);
      };
      switch (url) {
        case '/metrics': {
          const reg = metricsContentType(req.headers.accept) === Registry.OPENMETRICS_CONTENT_TYPE ? openMetrics : registry;
          reg.metrics().then(
            (body) => reply(200, reg.contentType, body),
            (err: Error) => {
              log.error('cannot render metrics', { err: err.message });
              reply(500, 'text/plain', `cannot render metrics: ${err.message}\n`);
            },
          );
          return;
        }
        case '/healthz':
          reply(200, 'text/plain', 'ok\n');
          return;
        case '/readyz': {
          const r = readiness();
          reply(r.ready ? 200 : 503, 'text/plain', r.detail + '\n');
          return;
        }
        case '/':
          reply(
            200,
            'text/html',
            '<html><head><title>bpfnet-exporter</title></head><body><h1>bpfnet-exporter</h1><p><a href="/metrics">Metrics</a> <a href="/readyz">Readiness</a></p></body></html>\n',
          );
          return;
        default:
          reply(404, 'text/plain', 'not found: try /metrics\n');
      }
    });
    server.keepAliveTimeout = 65_000;

    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, at)));
      server.listen(at.port, at.host, () => resolve());
    });
    const bound = server.address() as AddressInfo;
    return new MetricsServer(server, { host: bound.address, port: bound.port });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function listenError(err: NodeJS.ErrnoException, at: ListenAddress): Error {
  const where = `--listen ${at.host.includes(':') ? `[${at.host}]` : at.host}:${at.port}`;
  switch (err.code) {
    case 'EADDRINUSE':
      return new EnvironmentError(`${where}: address already in use; stop what listens there or choose another --listen`);
    case 'EACCES':
      return new EnvironmentError(`${where}: permission denied; run as root or choose a port above 1023`);
    case 'EADDRNOTAVAIL':
    case 'EINVAL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new UsageError(`${where}: not an address of this host; give one of its addresses, or 0.0.0.0`);
    default:
      return new EnvironmentError(`${where}: ${err.message}`);
  }
}
