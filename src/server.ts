// SPDX-License-Identifier: Apache-2.0
// The HTTP endpoints: /metrics (Prometheus text, or OpenMetrics when the
// scraper asks for it), /healthz (the process answers) and /readyz (every
// requested probe is attached). Connections are capped, and a client that
// is slow to ask or to take its answer is cut off in seconds, so that idle or
// stalled connections cannot take the process's file descriptors (the BPF
// objects need them) nor keep a scraper out. With --web.config.file the
// same server speaks TLS (new certificates apply to new connections, the
// socket stays) and asks for basic auth (src/web-config.ts).
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Registry, type RegistryContentType } from 'prom-client';
import { BasicAuth } from './basic-auth';
import { ConnectionLimit } from './connection-limit';
import { EnvironmentError, UsageError } from './errors';
import { render } from './metrics/exposition';
import type { Logger } from './log';
import type { TlsSettings, WebConfig } from './web-config';
import { WebConfigWatch } from './web-config-watch';

/** Answered without basic auth: what a kubelet probes, which cannot send
 * credentials; they say only "ok" and which probes are attached. */
export const OPEN_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz']);

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
    throw new UsageError(`--listen ${text}: not an address; give HOST:PORT, [IPV6]:PORT or :PORT (e.g. 0.0.0.0:19435)`);
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
    private readonly watch: WebConfigWatch | undefined,
  ) {}

  /** Whether it speaks TLS. */
  get tls(): boolean {
    return this.server instanceof https.Server;
  }

  static async listen(
    at: ListenAddress,
    registry: Registry,
    readiness: () => { ready: boolean; detail: string },
    log: Logger,
    limits: Partial<HttpLimits> = {},
    web?: WebConfig,
  ): Promise<MetricsServer> {
    const l = { ...HTTP_DEFAULTS, ...limits };
    const connections = new ConnectionLimit<Socket>({ max: l.maxConnections, log });
    const options: http.ServerOptions = {
      headersTimeout: l.headersTimeoutMs,
      requestTimeout: l.requestTimeoutMs,
      keepAliveTimeout: l.keepAliveTimeoutMs,
      connectionsCheckingInterval: l.checkIntervalMs,
    };
    const auth = new BasicAuth(web?.users ?? new Map());
    let headers = web?.headers ?? {};
    let tlsNow = web?.tls;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      const socket = rawSocket(req.socket);
      connections.requestStarted(socket);
      res.once('close', () => connections.requestEnded(socket));
      for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
      const url = (req.url ?? '/').split('?')[0]!;
      if (!auth.enabled || OPEN_PATHS.has(url)) return answer(req, res, url);
      auth.check(req.headers.authorization).then(
        (ok) => {
          if (ok) return answer(req, res, url);
          res.writeHead(401, { 'Content-Type': 'text/plain', 'WWW-Authenticate': 'Basic realm="bpfnet-exporter", charset="UTF-8"' }).end('Unauthorized\n');
        },
        (err: Error) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`cannot check credentials: ${err.message}\n`),
      );
    };
    const answer = (req: http.IncomingMessage, res: http.ServerResponse, url: string): void => {
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
    };
    const server = web?.tls
      ? https.createServer({ ...options, ...tlsServerOptions(web.tls), handshakeTimeout: l.headersTimeoutMs }, handler)
      : http.createServer(options, handler);
    if (server instanceof https.Server) {
      // what OpenSSL cannot decide alone: a certificate required but not
      // verified, one verified only if given, and the names it must carry
      server.on('secureConnection', (socket: TLSSocket) => {
        if (tlsNow && !clientAllowed(socket, tlsNow)) socket.destroy();
      });
    }
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
    const apply = (next: WebConfig): void => {
      if (!next.tls !== !tlsNow) {
        throw new Error(
          `--web.config.file ${next.file}: tls_server_config ${next.tls ? 'added' : 'removed'}; switching between HTTP and HTTPS takes a restart`,
        );
      }
      if (next.tls) {
        const o = tlsServerOptions(next.tls);
        (server as https.Server).setSecureContext(o);
        // read for each new connection; setSecureContext leaves them
        Object.assign(server, { requestCert: o.requestCert, rejectUnauthorized: o.rejectUnauthorized });
      }
      tlsNow = next.tls;
      headers = next.headers;
      auth.setUsers(next.users);
    };
    const watch = web && new WebConfigWatch(web, apply, log);
    return new MetricsServer(server, connections, { host: bound.address, port: bound.port }, watch);
  }

  async close(): Promise<void> {
    this.watch?.stop();
    this.connections.stop();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/** The TCP socket under a TLS one: what the connection limit counts. */
function rawSocket(socket: Socket): Socket {
  return (socket as { _parent?: Socket })._parent ?? socket;
}

function tlsServerOptions(t: TlsSettings): https.ServerOptions {
  return {
    ...t.context,
    requestCert: t.clientAuth !== 'NoClientCert',
    // the other types are checked once the handshake is done (clientAllowed)
    rejectUnauthorized: t.clientAuth === 'RequireAndVerifyClientCert',
  };
}

/** Whether a client passes the client auth type and client_allowed_sans. */
export function clientAllowed(socket: TLSSocket, t: TlsSettings): boolean {
  const cert = socket.getPeerCertificate();
  const given = cert !== null && Object.keys(cert).length > 0;
  switch (t.clientAuth) {
    case 'RequireAnyClientCert':
      if (!given) return false;
      break;
    case 'VerifyClientCertIfGiven':
      if (given && !socket.authorized) return false;
      break;
    case 'RequireAndVerifyClientCert':
      if (!given || !socket.authorized) return false;
      break;
  }
  if (!t.allowedSans) return true;
  return given && subjectAltNames(cert.subjectaltname ?? '').some((n) => t.allowedSans!.includes(n));
}

/** The names of Node.js's subjectaltname text ("DNS:a, IP Address:10.0.0.1,
 * URI:spiffe://x"); a name with a comma or quote comes JSON-quoted. */
export function subjectAltNames(text: string): string[] {
  const names: string[] = [];
  const re = /(?:^|, )(?:DNS|IP Address|email|URI):("(?:[^"\\]|\\.)*"|[^,]*)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) names.push(m[1]!.startsWith('"') ? (JSON.parse(m[1]!) as string) : m[1]!);
  return names;
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
