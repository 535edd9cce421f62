// SPDX-License-Identifier: Apache-2.0
// Network namespaces for tests: created with ip netns, loopback up, removed
// with everything that runs inside them.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import type { TestCgroup } from './cgroup';
import { onCleanup } from './cleanup';

let counter = 0;

export interface TcpCounters {
  ActiveOpens: number;
  PassiveOpens: number;
  AttemptFails: number;
  EstabResets: number;
  RetransSegs: number;
  OutRsts: number;
  InSegs: number;
  [name: string]: number;
}

export class Netns {
  readonly path: string;
  private readonly children = new Set<ChildProcess>();
  readonly destroy: () => Promise<void>;

  constructor(readonly name: string) {
    this.path = `/run/netns/${name}`;
    execFileSync('ip', ['netns', 'add', name]);
    this.destroy = onCleanup(`netns ${name}`, () => {
      for (const c of this.children) c.kill('SIGKILL');
      execFileSync('ip', ['netns', 'del', name]);
    });
    this.run('ip', 'link', 'set', 'lo', 'up');
  }

  /** Runs a command inside and returns its stdout; throws on failure. */
  run(cmd: string, ...args: string[]): string {
    return execFileSync('ip', ['netns', 'exec', this.name, cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Starts a long-running command inside (and inside cgroup, if given);
   * killed at cleanup. */
  spawn(cmd: string, args: string[], cgroup?: TestCgroup): ChildProcess {
    let argv: [string, string[]] = ['ip', ['netns', 'exec', this.name, cmd, ...args]];
    if (cgroup) argv = cgroup.wrap(...argv);
    const child = spawn(argv[0], argv[1], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** Joins this namespace to peer with a veth pair, both ends up: ifname
   * here with address (CIDR), peerIfname there with peerAddress. With
   * staticNeighbours, each end knows the other's MAC address beforehand, so
   * no ARP packet crosses the pair. */
  veth(ifname: string, address: string, peer: Netns, peerIfname: string, peerAddress: string, opts: { staticNeighbours?: boolean } = {}): void {
    const mac = (n: number) => `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`;
    this.run('ip', 'link', 'add', ifname, 'address', mac(1), 'type', 'veth', 'peer', 'name', peerIfname, 'address', mac(2), 'netns', peer.name);
    for (const [ns, dev, addr, other, otherMac] of [
      [this, ifname, address, peerAddress, mac(2)],
      [peer, peerIfname, peerAddress, address, mac(1)],
    ] as const) {
      ns.run('ip', 'addr', 'add', addr, 'dev', dev);
      ns.run('ip', 'link', 'set', dev, 'up');
      if (opts.staticNeighbours) ns.run('ip', 'neigh', 'replace', other.split('/')[0]!, 'lladdr', otherMac, 'dev', dev, 'nud', 'permanent');
    }
  }

  sysctl(key: string, value: string | number): void {
    this.run('sysctl', '-q', '-w', `${key}=${value}`);
  }

  /** Loads an nftables ruleset (nft -f syntax) inside. */
  nft(ruleset: string): void {
    execFileSync('ip', ['netns', 'exec', this.name, 'nft', '-f', '-'], { input: ruleset });
  }

  /** Packets counted so far by the counters of an nftables table inside. */
  nftPackets(table: string): number {
    const out = this.run('nft', 'list', 'table', ...table.split(' '));
    return [...out.matchAll(/counter packets (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  }

  /** Waits until the counters of an nftables table have seen n packets. */
  async waitForPackets(table: string, n: number, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.nftPackets(table) < n) {
      if (Date.now() > deadline) throw new Error(`nft table ${table} saw fewer than ${n} packets`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The kernel's TCP counters in this namespace (/proc/net/snmp). */
  tcpCounters(): TcpCounters {
    const lines = this.run('cat', '/proc/net/snmp')
      .split('\n')
      .filter((l) => l.startsWith('Tcp:'));
    const names = lines[0]!.split(/\s+/).slice(1);
    const values = lines[1]!.split(/\s+/).slice(1).map(Number);
    return Object.fromEntries(names.map((n, i) => [n, values[i]!])) as TcpCounters;
  }
}

/** A new namespace with a name unique to this test run. */
export function createNetns(label: string): Netns {
  return new Netns(`bpfnet-t${process.pid}-${++counter}-${label}`.slice(0, 60));
}
