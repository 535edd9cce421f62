// SPDX-License-Identifier: Apache-2.0
// The real exporter, started as users start it (the CLI in its own process),
// scraped over HTTP, stopped with a signal.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { onCleanup } from './cleanup';
import { parseMetrics, type Metrics } from './prom-text';

/** The command users run (build/js/src/cli.js behind the entry point's guards). */
export const CLI = path.resolve(__dirname, '..', '..', '..', '..', 'bin', 'bpfnet-exporter');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion (for commands and bad input). */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; wrap?: string[] } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const argv = [...(opts.wrap ?? []), process.execPath, CLI, ...args];
    const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`bpfnet-exporter ${args.join(' ')} did not finish in time; stderr: ${stderr}`));
    }, opts.timeoutMs ?? 30_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export function httpGet(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; contentType: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, contentType: String(res.headers['content-type'] ?? '') }));
    });
    req.on('error', (err) => reject(new Error(`GET ${url}: ${err.message}`)));
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${url} timed out`)));
  });
}

export class RunningExporter {
  private stderrText = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly url: Promise<string>;
  private readonly cleanup: () => Promise<void>;

  /** Starts the CLI with args (after --listen 127.0.0.1:0); wrap is a
   * command prefix (unshare, setpriv...). exact: args and env as given, and
   * nothing else (as a pod starts it). command: another exporter than this
   * checkout's (an installed package, an image's entrypoint), in cwd. */
  constructor(
    readonly args: string[],
    env: NodeJS.ProcessEnv = {},
    wrap: string[] = [],
    exact = false,
    { command = [process.execPath, CLI], cwd }: { command?: string[]; cwd?: string } = {},
  ) {
    const argv = [...wrap, ...command, ...(exact ? [] : ['--listen', '127.0.0.1:0']), ...args];
    const child: ChildProcess = spawn(argv[0]!, argv.slice(1), {
      cwd,
      env: exact ? env : { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    // an exporter that dies while a test uses it says why, there and then
    void this.exited.then(({ code, signal }) => {
      if (!this.stopping && (code !== 0 || signal))
        process.stderr.write(`\nexporter ${child.pid} died (${signal ?? code}):\n${this.stderrText.slice(-4000)}\n`);
    });
    this.url = new Promise((resolve, reject) => {
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (d: string) => {
        this.stderrText += d;
        // logfmt, or --log-format json
        const m = /msg=listening address=(\S+)|"msg":"listening","address":"([^"]+)"/.exec(this.stderrText);
        if (m) resolve(`http://${m[1] ?? m[2]}`);
      });
      void this.exited.then(({ code }) => reject(new Error(`exporter exited (${code}) before listening:\n${this.stderrText}`)));
    });
    // a test that failed leaves it running: stopped as a user would stop it,
    // so that a redirect removes its pins; killed if that takes too long
    // (or, at the process's exit, where nothing can be awaited)
    this.cleanup = onCleanup(`exporter ${child.pid}`, async () => {
      this.stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      process.once('exit', () => child.kill('SIGKILL'));
      await this.exited;
      clearTimeout(killer);
    });
  }

  readonly child: ChildProcess;
  private stopping = false;

  get pid(): number {
    return this.child.pid!;
  }

  get stderr(): string {
    return this.stderrText;
  }

  /** Resolves once /readyz says ready with every probe attached (a probe
   * down would say "ready; down: ..."). */
  async ready(timeoutMs = 20_000): Promise<this> {
    const url = await this.url;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await httpGet(`${url}/readyz`);
      if (r.status === 200 && r.body === 'ready\n') return this;
      if (Date.now() > deadline) throw new Error(`exporter not ready: ${r.body}\n${this.stderrText}`);
      await sleep(100);
    }
  }

  async scrape(headers: Record<string, string> = {}): Promise<Metrics> {
    const r = await httpGet(`${await this.url}/metrics`, headers);
    if (r.status !== 200) throw new Error(`/metrics answered ${r.status}: ${r.body}`);
    return parseMetrics(r.body);
  }

  async metricsText(headers: Record<string, string> = {}): Promise<{ body: string; contentType: string }> {
    const r = await httpGet(`${await this.url}/metrics`, headers);
    return { body: r.body, contentType: r.contentType };
  }

  /** Scrapes until done(metrics) holds (the kernel may still be closing
   * sockets), or the time is up; returns the last scrape either way, for the
   * test to assert on, so a failure shows the numbers. */
  async settle(done: (m: Metrics) => boolean, timeoutMs = 10_000): Promise<Metrics> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.scrape();
      if (done(m) || Date.now() > deadline) return m;
      await sleep(100);
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.stopping = true;
    this.child.kill(signal);
    const r = await this.exited;
    await this.cleanup();
    return r;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** What p resolves to, or 'timeout' after ms; the timer goes either way, so
 * a long timeout left behind does not keep mocha alive after the last test. */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** The fields of a logfmt log line, values unquoted. */
export function logFields(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of line.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)) out[m[1]!] = m[2]!.startsWith('"') ? (JSON.parse(m[2]!) as string) : m[2]!;
  return out;
}
