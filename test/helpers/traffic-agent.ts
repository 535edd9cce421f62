// SPDX-License-Identifier: Apache-2.0
// A TCP peer for tests, run as its own process (often inside a namespace):
//   serve:   listens, accepts, reads until the client's FIN, answers `down`
//            bytes and closes; prints {"event":"listening"} then one line per
//            connection served.
//   connect: makes connections one by one, each sending `up` bytes, closing
//            its side, reading the answer until the server's FIN; or ending
//            in a way a test wants (reset, abort); prints one result per
//            connection and {"event":"done"}.
// Messages are JSON lines on stdout; stdin closing stops a server.
import fs from 'node:fs';
import net from 'node:net';

export interface ServeSpec {
  role: 'serve';
  host: string;
  port: number;
  /** bytes the server writes back after the client's FIN */
  down: number;
  /** after listening, block without calling accept() until this file
   * exists: connections made meanwhile wait in the accept queue */
  holdUntilFile?: string;
  /** the listen backlog */
  backlog?: number;
  /** the command name (/proc/PID/comm) as bytes in hex, for names that are
   * not UTF-8 (process.title writes UTF-8); default test-server */
  commHex?: string;
}

export type Ending =
  | 'normal' // send up, FIN, read down until FIN
  | 'reset' // send up, then reset (RST) without reading the answer
  | 'abort'; // start connecting, then close before the handshake ends

export interface ConnectSpec {
  role: 'connect';
  host: string;
  port: number;
  /** each connection: bytes to send, how it ends, and how long to wait once
   * connected before sending anything (or, with waitForGo, for a line on stdin) */
  connections: { up: number; ending?: Ending; localPort?: number; holdMs?: number; waitForGo?: boolean }[];
  /** ms to wait before aborting (ending "abort") */
  abortAfterMs?: number;
  /** wait for a line on stdin before connecting (so a test can first
   * start an exporter filtering on this process) */
  waitForGo?: boolean;
  /** open every connection at once instead of one after the other (a burst) */
  parallel?: boolean;
  /** instead of connections to port: for each of these cgroup v2
   * directories, move this process there (its new sockets are then that
   * cgroup's), then make connections[0] to each of ports, all at once */
  hop?: { cgroups: string[]; ports: number[] };
}

function emit(msg: object): void {
  process.stdout.write(JSON.stringify(msg) + '\n');
}

function payload(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i & 0xff;
  return b;
}

function serve(spec: ServeSpec): void {
  const handle = (sock: net.Socket) => {
    let received = 0;
    sock.on('data', (d) => (received += d.length));
    sock.on('end', () => {
      sock.end(payload(spec.down));
    });
    sock.on('error', (err: NodeJS.ErrnoException) => emit({ event: 'served', received, error: err.code }));
    sock.on('close', (hadError) => {
      if (!hadError) emit({ event: 'served', received });
    });
  };
  const server = net.createServer({ allowHalfOpen: true }, handle);
  server.on('error', (err) => {
    emit({ event: 'error', error: (err as NodeJS.ErrnoException).code ?? err.message });
    process.exit(1);
  });
  const start = () =>
    server.listen({ host: spec.host, port: spec.port, backlog: spec.backlog ?? 511 }, () => {
      emit({ event: 'listening', pid: process.pid, port: (server.address() as net.AddressInfo).port });
      while (spec.holdUntilFile && !fs.existsSync(spec.holdUntilFile)) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      }
    });
  start();
  process.stdin.on('end', () => server.close(() => process.exit(0)));
  process.stdin.resume();
}

function connectOne(spec: ConnectSpec, c: ConnectSpec['connections'][number]): Promise<object> {
  return new Promise((resolve) => {
    const ending = c.ending ?? 'normal';
    let received = 0;
    let settled = false;
    const done = (r: object) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const sock = net.connect({ host: spec.host, port: spec.port, localPort: c.localPort, allowHalfOpen: true });
    sock.on('error', (err: NodeJS.ErrnoException) => done({ event: 'result', ok: false, error: err.code, received }));
    if (ending === 'abort') {
      setTimeout(() => {
        sock.destroy();
        done({ event: 'result', ok: true, ending, received });
      }, spec.abortAfterMs ?? 200);
      return;
    }
    sock.on('connect', () => {
      emit({ event: 'connected', localPort: sock.localPort });
      if (c.waitForGo) process.stdin.once('data', () => afterConnect());
      else setTimeout(() => afterConnect(), c.holdMs ?? 0);
    });
    const afterConnect = () => {
      if (ending === 'reset') {
        sock.write(payload(c.up), () => {
          // give the server a moment to read before the RST
          setTimeout(() => {
            sock.resetAndDestroy();
            done({ event: 'result', ok: true, ending, localPort: sock.localPort, received });
          }, 50);
        });
        return;
      }
      sock.end(payload(c.up));
    };
    sock.on('data', (d) => (received += d.length));
    sock.on('end', () => sock.destroy());
    sock.on('close', (hadError) => {
      if (!hadError) done({ event: 'result', ok: true, ending, received });
    });
  });
}

async function connect(spec: ConnectSpec): Promise<void> {
  emit({ event: 'started', pid: process.pid });
  if (spec.waitForGo) await new Promise((resolve) => process.stdin.once('data', resolve));
  if (spec.hop) {
    for (const dir of spec.hop.cgroups) {
      fs.writeFileSync(`${dir}/cgroup.procs`, String(process.pid));
      const results = await Promise.all(spec.hop.ports.map((port) => connectOne({ ...spec, port }, spec.connections[0]!)));
      emit({ event: 'hopped', cgroup: dir, ok: results.filter((r) => (r as { ok?: boolean }).ok).length });
    }
  } else if (spec.parallel) for (const r of await Promise.all(spec.connections.map((c) => connectOne(spec, c)))) emit(r);
  else for (const c of spec.connections) emit(await connectOne(spec, c));
  process.stdin.destroy(); // nothing more to read; let the process end
  emit({ event: 'done' });
}

const spec = JSON.parse(process.argv[2] ?? '{}') as ServeSpec | ConnectSpec;
// the command the kernel reports for this process (/proc/PID/comm)
process.title = spec.role === 'serve' ? 'test-server' : 'test-client';
// the main thread's name, the one that calls accept(): any bytes
if (spec.role === 'serve' && spec.commHex) fs.writeFileSync('/proc/self/comm', Buffer.from(spec.commHex, 'hex'));
if (spec.role === 'serve') serve(spec);
else if (spec.role === 'connect') void connect(spec);
else {
  process.stderr.write('usage: traffic-agent \'{"role":"serve"|"connect",...}\'\n');
  process.exit(2);
}
