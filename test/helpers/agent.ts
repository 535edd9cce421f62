// SPDX-License-Identifier: Apache-2.0
// Starts traffic-agent processes inside a namespace and reads what they report.
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { TestCgroup } from './cgroup';
import type { Netns } from './netns';
import type { ConnectSpec, ServeSpec } from './traffic-agent';

const AGENT = path.join(__dirname, 'traffic-agent.js');

export interface AgentMessage {
  event: string;
  [key: string]: unknown;
}

/** Calls fn with each line of a child's stdout, as it comes, without its newline. */
export function onLines(child: ChildProcess, fn: (line: string) => void): void {
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      fn(line);
    }
  });
}

export class AgentProcess {
  readonly messages: AgentMessage[] = [];
  private stderr = '';
  private waiters: (() => void)[] = [];
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    onLines(child, (line) => {
      this.messages.push(JSON.parse(line) as AgentMessage);
      for (const w of this.waiters.splice(0)) w();
    });
    child.stderr!.on('data', (d) => (this.stderr += d));
    this.exited = new Promise((resolve) =>
      child.on('exit', (code) => {
        for (const w of this.waiters.splice(0)) w();
        resolve(code);
      }),
    );
  }

  /** Resolves with the first message matching, failing if the agent exits first. */
  async waitFor(event: string, timeoutMs = 30_000): Promise<AgentMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.find((x) => x.event === event);
      if (m) return m;
      if (this.child.exitCode !== null) throw new Error(`agent exited (${this.child.exitCode}) before "${event}": ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`agent sent no "${event}" in time: ${this.stderr}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(0, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Lets a client started with waitForGo begin connecting. */
  go(): void {
    this.child.stdin!.write('go\n');
  }

  all(event: string): AgentMessage[] {
    return this.messages.filter((m) => m.event === event);
  }
}

export class Server extends AgentProcess {
  pid = 0;
  port = 0;

  /** Closes the listener (stdin EOF) and waits for the process to end. */
  async stop(): Promise<void> {
    this.child.stdin!.end();
    await this.exited;
  }
}

/** A server inside ns; resolves once it listens. */
export async function startServer(ns: Netns, spec: Omit<ServeSpec, 'role'>, cgroup?: TestCgroup): Promise<Server> {
  const s = new Server(ns.spawn(process.execPath, [AGENT, JSON.stringify({ role: 'serve', ...spec })], cgroup));
  const m = await s.waitFor('listening');
  s.pid = m.pid as number;
  s.port = m.port as number;
  return s;
}

/** Runs a client inside ns to the end; returns its per-connection results. */
export async function runClient(ns: Netns, spec: Omit<ConnectSpec, 'role'>, cgroup?: TestCgroup): Promise<{ pid: number; results: AgentMessage[] }> {
  const c = new AgentProcess(ns.spawn(process.execPath, [AGENT, JSON.stringify({ role: 'connect', ...spec })], cgroup));
  const started = await c.waitFor('started');
  await c.waitFor('done', 120_000);
  await c.exited;
  return { pid: started.pid as number, results: c.all('result') };
}

/** Starts a client inside ns without waiting for it. */
export function startClient(ns: Netns, spec: Omit<ConnectSpec, 'role'>): AgentProcess {
  return new AgentProcess(ns.spawn(process.execPath, [AGENT, JSON.stringify({ role: 'connect', ...spec })]));
}

const ECHO_AGENT = path.join(__dirname, 'echo-agent.js');

/** An echo-agent process (echo, stream or proxy) inside ns and cgroup. */
export function spawnEchoAgent(ns: Netns, spec: object, cgroup?: TestCgroup): AgentProcess {
  return new AgentProcess(ns.spawn(process.execPath, [ECHO_AGENT, JSON.stringify(spec)], cgroup));
}

/** An echo server or proxy; resolves once it listens. */
export async function startEchoServer(ns: Netns, spec: object, cgroup?: TestCgroup): Promise<Server> {
  const s = new Server(ns.spawn(process.execPath, [ECHO_AGENT, JSON.stringify(spec)], cgroup));
  const m = await s.waitFor('listening');
  s.pid = m.pid as number;
  s.port = m.port as number;
  return s;
}

export interface StreamResult {
  sent: number;
  received: number;
  writes: number;
  sentSha256?: string;
  receivedSha256?: string;
  error?: string;
}

/** Waits for a stream agent to finish; its per-connection results. */
export async function streamResults(agent: AgentProcess, timeoutMs = 300_000): Promise<StreamResult[]> {
  await agent.waitFor('done', timeoutMs);
  await agent.exited;
  return agent.all('result') as unknown as StreamResult[];
}
