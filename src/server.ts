// SPDX-License-Identifier: Apache-2.0
// The HTTP endpoints: /metrics (Prometheus text, or OpenMetrics when the
// scraper asks for it), /healthz (the process answers) and /readyz (every
// requested probe is attached). Connections are capped, and a client that
// is slow to ask or to take its answer is cut off in seconds, so that idle or
// stalled connections cannot take the process's file descriptors (the BPF
// objects need them) nor keep a scraper out.
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { Registry, type RegistryContentType } from 'prom-client';
import { ConnectionLimit } from './connection-limit';
import { EnvironmentError, UsageError } from './errors';
import { render } from './metrics/exposition';
import type { Logger } from './log';

/** How the server treats connections. */
export interface HttpLimits {
  /** open connections at most (--http-connection-limit); at the cap a new
   * one closes the connection idle the longest (src/connection-limit.ts) */
  maxConnections: number;
  /** from a connection's opening to its request's last header. Node.js
   * (20 and later) starts this clock when the connection is accepted, so a
   * connection that never sends a byte is closed by it too (with a 408) */
  headersTimeoutMs: number;
  /** from a connection's opening to its whole request, body included */
  requestTimeoutMs: number;
  /** an idle keep-alive connection is closed after this; longer than a
   * 60 s scrape interval, so Prometheus keeps reusing its connection */
  keepAliveTimeoutMs: number;
  /** a request whose answer makes no progress for this long (a client that
   * does not read its response) is abandoned and its connection closed */
  stalledResponseTimeoutMs: number;
  /** how often Node.js looks for connections past the header and request
   * timeouts: they fire up to this much late */
  checkIntervalMs: number;
}

export const HTTP_DEFAULTS: Readonly<HttpLimits> = {
  // Prometheus needs one connection per server scraping; this leaves room for
  // HA pairs, people with curl and health checks, and stays far below any
  // open-file limit
  maxConnections: 128,
  // a scrape sends a few hundred bytes of headers at once; 5 s leaves room
  // for retransmissions on a bad network
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 65_000,
  stalledResponseTimeoutMs: 30_000,
  checkIntervalMs: 1_000,
};

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

export class MetricsServer {
  private constructor(
    private readonly server: http.Server,
    private readonly connections: ConnectionLimit<Socket>,
    readonly address: ListenAddress,
  ) {}

  static async listen(
    at: ListenAddress,
    registry: Registry,
    readiness: () => { ready: boolean; detail: string },
    log: Logger,
    limits: Partial<HttpLimits> = {},
  ): Promise<MetricsServer> {
    const l = { ...HTTP_DEFAULTS, ...limits };
    const connections = new ConnectionLimit<Socket>({ max: l.maxConnections, log });
    const options: http.ServerOptions = {
      headersTimeout: l.headersTimeoutMs,
      requestTimeout: l.requestTimeoutMs,
      keepAliveTimeout: l.keepAliveTimeoutMs,
      connectionsCheckingInterval: l.checkIntervalMs,
    };
    const server = http.createServer(options, (req, res) => {
      connections.requestStarted(req.socket);
      res.once('close', () => connections.requestEnded(req.socket));
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
          const type = metricsContentType(req.headers.accept);
          render(registry, type === Registry.OPENMETRICS_CONTENT_TYPE ? 'openmetrics' : 'prometheus').then(
            (chunks) => {
              const length = chunks.reduce((n, c) => n + c.length, 0);
              res.writeHead(200, { 'Content-Type': type, 'Content-Length': length });
              if (req.method === 'HEAD') return void res.end();
              // one writev for the pieces
              res.cork();
              for (const c of chunks) res.write(c);
              res.end();
            },
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
    // while a request is answered; Node.js sets the keep-alive timeout
    // between requests, and the header timeout covers the time before one
    server.timeout = l.stalledResponseTimeoutMs;
    server.on('connection', (socket: Socket) => {
      if (connections.opened(socket)) socket.once('close', () => connections.closedBy(socket));
    });

    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, at)));
      server.listen(at.port, at.host, () => resolve());
    });
    const bound = server.address() as AddressInfo;
    return new MetricsServer(server, connections, { host: bound.address, port: bound.port });
  }

  async close(): Promise<void> {
    this.connections.stop();
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
