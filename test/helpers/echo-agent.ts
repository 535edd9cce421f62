// SPDX-License-Identifier: Apache-2.0
// Echo peers that prove a stream arrived whole, run as their own processes
// (in a namespace and cgroup a test made):
//   echo:   listens; echoes every byte back; at the client's FIN, finishes and
//           closes; prints {"event":"served",received,sha256} per connection.
//   stream: opens `connections` connections at once; each writes `bytes`
//           pseudo-random bytes (a per-connection seed) in writes of 1 byte to
//           1 MiB, half-closes, reads the echo until FIN; prints
//           {"event":"connected"} as each connects, then per connection
//           {"event":"result",sent,received,sentSha256,receivedSha256,writes}.
//   proxy:  listens; for each connection connects upstream (optionally from a
//           given local address) and copies both ways, half-closes included.
// Messages are JSON lines on stdout; a server ends when stdin closes.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';

export interface EchoSpec {
  role: 'echo';
  host: string;
  port: number;
}

export interface StreamSpec {
  role: 'stream';
  host: string;
  port: number;
  connections: number;
  /** bytes each connection sends (and gets back) */
  bytes: number;
  /** largest write; sizes are spread evenly on a log scale from 1 byte */
  maxWrite?: number;
  /** ms to wait between writes, to stretch a stream over time */
  paceMs?: number;
  /** after connecting, wait until this file exists before writing */
  holdUntilFile?: string;
  /** reset each connection (RST) after `resetAfter` bytes instead of finishing */
  resetAfter?: number;
}

export interface ProxySpec {
  role: 'proxy';
  host: string;
  port: number;
  upstreamHost: string;
  upstreamPort: number;
  /** local address of the upstream connections (Istio's 127.0.0.6) */
  upstreamLocalAddress?: string;
}

function emit(msg: object): void {
  process.stdout.write(JSON.stringify(msg) + '\n');
}

/** A small, fast, seeded generator (xorshift32): the same bytes for the same seed. */
class Bytes {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0 || 1;
  }
  next(): number {
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state;
  }
  fill(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE(this.next(), i);
    for (; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
}

function untilFile(file: string | undefined): Promise<void> {
  return new Promise((resolve) => {
    const poll = () => (!file || fs.existsSync(file) ? resolve() : setTimeout(poll, 10));
    poll();
  });
}

function echo(spec: EchoSpec): void {
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    const hash = crypto.createHash('sha256');
    let received = 0;
    sock.on('data', (d) => {
      received += d.length;
      hash.update(d);
      if (!sock.write(d)) sock.pause();
    });
    sock.on('drain', () => sock.resume());
    sock.on('end', () => sock.end());
    sock.on('error', (err: NodeJS.ErrnoException) => emit({ event: 'served', received, error: err.code }));
    sock.on('close', (hadError) => {
      if (!hadError) emit({ event: 'served', received, sha256: hash.digest('hex') });
    });
  });
  listen(server, spec.host, spec.port);
}

function listen(server: net.Server, host: string, port: number): void {
  server.on('error', (err) => {
    emit({ event: 'error', error: (err as NodeJS.ErrnoException).code ?? err.message });
    process.exit(1);
  });
  server.listen({ host, port, backlog: 1024 }, () => emit({ event: 'listening', pid: process.pid, port: (server.address() as net.AddressInfo).port }));
  process.stdin.on('end', () => {
    server.close();
    process.exit(0);
  });
  process.stdin.resume();
}

function streamOne(spec: StreamSpec, seed: number): Promise<object> {
  return new Promise((resolve) => {
    const gen = new Bytes(seed);
    const sizes = new Bytes(seed ^ 0x9e3779b9);
    const maxLog = Math.log2(spec.maxWrite ?? 1 << 20);
    const sentHash = crypto.createHash('sha256');
    const recvHash = crypto.createHash('sha256');
    let sent = 0;
    let received = 0;
    let writes = 0;
    let done = false;
    const finish = (r: object) => {
      if (!done) {
        done = true;
        resolve({ event: 'result', sent, received, writes, ...r });
      }
    };
    const sock = net.connect({ host: spec.host, port: spec.port, allowHalfOpen: true });
    sock.on('data', (d) => {
      received += d.length;
      recvHash.update(d);
    });
    sock.on('end', () => sock.end());
    sock.on('error', (err: NodeJS.ErrnoException) => finish({ error: err.code }));
    sock.on('close', () => finish({ sentSha256: sentHash.digest('hex'), receivedSha256: recvHash.digest('hex') }));
    const limit = spec.resetAfter ?? spec.bytes;
    const writeMore = (): void => {
      while (sent < limit) {
        const size = Math.min(limit - sent, Math.max(1, Math.floor(2 ** ((sizes.next() / 2 ** 32) * maxLog))));
        const chunk = gen.fill(size);
        sent += size;
        writes++;
        sentHash.update(chunk);
        const more = sock.write(chunk);
        if (spec.paceMs) {
          setTimeout(writeMore, spec.paceMs);
          return;
        }
        if (!more) {
          sock.once('drain', writeMore);
          return;
        }
      }
      if (spec.resetAfter !== undefined) {
        // let the bytes reach the peer, then reset
        setTimeout(() => sock.resetAndDestroy(), 100);
        return;
      }
      sock.end();
    };
    sock.on('connect', () => {
      emit({ event: 'connected', localPort: sock.localPort });
      void untilFile(spec.holdUntilFile).then(writeMore);
    });
  });
}

async function stream(spec: StreamSpec): Promise<void> {
  emit({ event: 'started', pid: process.pid });
  const results = await Promise.all(Array.from({ length: spec.connections }, (_, i) => streamOne(spec, i + 1)));
  for (const r of results) emit(r);
  emit({ event: 'done' });
  process.exit(0);
}

function proxy(spec: ProxySpec): void {
  const server = net.createServer({ allowHalfOpen: true }, (down) => {
    const up = net.connect({ host: spec.upstreamHost, port: spec.upstreamPort, localAddress: spec.upstreamLocalAddress, allowHalfOpen: true });
    down.pipe(up);
    up.pipe(down);
    const fail = () => {
      down.destroy();
      up.destroy();
    };
    down.on('error', fail);
    up.on('error', fail);
  });
  listen(server, spec.host, spec.port);
}

const spec = JSON.parse(process.argv[2] ?? '{}') as EchoSpec | StreamSpec | ProxySpec;
process.title = `test-${spec.role}`;
if (spec.role === 'echo') echo(spec);
else if (spec.role === 'stream') void stream(spec);
else if (spec.role === 'proxy') proxy(spec);
else {
  process.stderr.write('usage: echo-agent \'{"role":"echo"|"stream"|"proxy",...}\'\n');
  process.exit(2);
}
