// SPDX-License-Identifier: Apache-2.0
// A UDP peer for tests, run as its own process (often inside a namespace):
//   receive: binds host:port and prints {"event":"datagram","size":N} for
//            each datagram it reads; stdin closing stops it.
//   send:    sends `bursts` bursts of `burst` datagrams of `size` bytes to
//            host:port, the datagrams of a burst back to back (in one turn
//            of the event loop), `gapMs` apart; prints {"event":"done"}.
// Messages are JSON lines on stdout; the first is {"event":"ready"}.
import dgram from 'node:dgram';

export interface ReceiveSpec {
  role: 'receive';
  host: string;
  port: number;
}

export interface SendSpec {
  role: 'send';
  host: string;
  port: number;
  size: number;
  bursts: number;
  burst: number;
  gapMs: number;
}

function emit(msg: object): void {
  process.stdout.write(JSON.stringify(msg) + '\n');
}

function receive(spec: ReceiveSpec): void {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (m) => emit({ event: 'datagram', size: m.length }));
  sock.bind(spec.port, spec.host, () => emit({ event: 'ready', pid: process.pid }));
  process.stdin.on('end', () => sock.close());
  process.stdin.resume();
}

async function send(spec: SendSpec): Promise<void> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.connect(spec.port, spec.host, r));
  emit({ event: 'ready', pid: process.pid });
  const payload = Buffer.alloc(spec.size, 0x5a);
  for (let b = 0; b < spec.bursts; b++) {
    const sent: Promise<void>[] = [];
    for (let i = 0; i < spec.burst; i++) {
      sent.push(new Promise((resolve, reject) => sock.send(payload, (err) => (err ? reject(err) : resolve()))));
    }
    await Promise.all(sent);
    if (b < spec.bursts - 1) await new Promise((r) => setTimeout(r, spec.gapMs));
  }
  sock.close();
  emit({ event: 'done' });
}

const spec = JSON.parse(process.argv[2]!) as ReceiveSpec | SendSpec;
if (spec.role === 'receive') receive(spec);
else
  send(spec).catch((err: Error) => {
    emit({ event: 'error', error: err.message });
    process.exit(1);
  });
