// SPDX-License-Identifier: Apache-2.0
// A real Prometheus server (the Debian package's /usr/bin/prometheus) for
// tests: its own configuration and storage in a temporary directory, one
// scrape job every second, the HTTP API on a free loopback port. Stopped,
// and its directory removed, at cleanup even when a test fails.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { onCleanup } from './cleanup';
import { httpGet, sleep } from './exporter';

export const PROMETHEUS = '/usr/bin/prometheus';

export interface ScrapeJob {
  job: string;
  /** host:port */
  target: string;
  /** static labels of the target: every series gets them, or with
   * honorLabels those of its labels it was scraped without */
  labels: Record<string, string>;
  /** honor_labels: a scraped label wins over the target's of the same name
   * (default false: the scraped one is renamed exported_<name>) */
  honorLabels?: boolean;
  /** more settings of the job's scrape config (scheme, tls_config, basic_auth...) */
  extra?: Record<string, unknown>;
}

export type Labels = Record<string, string>;

export interface QueryResult {
  resultType: string;
  result: { metric: Labels; value?: [number, string]; values?: [number, string][] }[];
}

/** Answers of the HTTP API: data, or the error Prometheus gave. */
export type ApiAnswer<T> = { ok: true; data: T } | { ok: false; error: string };

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export class RunningPrometheus {
  private stderrText = '';
  private constructor(
    readonly url: string,
    private readonly child: ChildProcess,
    private readonly cleanup: () => Promise<void>,
  ) {
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (this.stderrText = (this.stderrText + d).slice(-8000)));
  }

  get stderr(): string {
    return this.stderrText;
  }

  /** Starts Prometheus scraping the job (or jobs) every second; resolves once it is ready. */
  static async start(job: ScrapeJob | ScrapeJob[]): Promise<RunningPrometheus> {
    const jobs = Array.isArray(job) ? job : [job];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bpfnet-prometheus-'));
    const removeDir = onCleanup(`prometheus directory ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
    const config = path.join(dir, 'prometheus.yml');
    fs.writeFileSync(
      config,
      JSON.stringify(
        {
          global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
          scrape_configs: jobs.map((j) => ({
            job_name: j.job,
            honor_labels: j.honorLabels ?? false,
            static_configs: [{ targets: [j.target], labels: j.labels }],
            ...j.extra,
          })),
        },
        null,
        2,
      ),
    ); // YAML reads JSON
    // a port found free can be taken before Prometheus binds it: try again
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const child = spawn(
        PROMETHEUS,
        [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const kill = onCleanup(`prometheus ${child.pid}`, async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
          await exited;
        }
      });
      const prom = new RunningPrometheus(`http://127.0.0.1:${port}`, child, async () => {
        await kill();
        await removeDir();
      });
      const deadline = Date.now() + 30_000;
      for (;;) {
        const ready = await Promise.race([
          httpGet(`${prom.url}/-/ready`).then(
            (r) => r.status === 200,
            () => false,
          ),
          exited.then(() => 'exited' as const),
        ]);
        if (ready === true) return prom;
        if (ready === 'exited' || child.exitCode !== null) break;
        if (Date.now() > deadline) throw new Error(`prometheus not ready in time:\n${prom.stderr}`);
        await sleep(100);
      }
      await kill();
      if (attempt === 3 || !/address already in use/.test(prom.stderr)) throw new Error(`prometheus exited at start:\n${prom.stderr}`);
    }
  }

  private async api<T>(endpoint: string, params: [string, string][]): Promise<ApiAnswer<T>> {
    const query = params.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
    const r = await httpGet(`${this.url}/api/v1/${endpoint}?${query}`);
    let body: { status?: string; data?: T; error?: string; errorType?: string };
    try {
      body = JSON.parse(r.body);
    } catch {
      return { ok: false, error: `HTTP ${r.status}: ${r.body.slice(0, 200)}` };
    }
    if (r.status === 200 && body.status === 'success') return { ok: true, data: body.data as T };
    return { ok: false, error: `${body.errorType ?? `HTTP ${r.status}`}: ${body.error ?? r.body.slice(0, 200)}` };
  }

  /** An instant query, now. */
  query(expr: string): Promise<ApiAnswer<QueryResult>> {
    return this.api<QueryResult>('query', [['query', expr]]);
  }

  /** Values of a label on the series matching a selector in the last hour
   * (what Grafana's label_values() asks). */
  labelValues(label: string, match?: string): Promise<ApiAnswer<string[]>> {
    const now = Date.now() / 1000;
    return this.api<string[]>(`label/${encodeURIComponent(label)}/values`, [
      ...(match ? [['match[]', match] as [string, string]] : []),
      ['start', String(now - 3600)],
      ['end', String(now)],
    ]);
  }

  /** Series matching a selector in the last hour. */
  series(match: string): Promise<ApiAnswer<Labels[]>> {
    const now = Date.now() / 1000;
    return this.api<Labels[]>('series', [
      ['match[]', match],
      ['start', String(now - 3600)],
      ['end', String(now)],
    ]);
  }

  /** Metadata (type, help) the targets' scrapes declared for metric. */
  targetMetadata(metric: string): Promise<ApiAnswer<{ target: Labels; type: string; help: string }[]>> {
    return this.api('targets/metadata', [['metric', metric]]);
  }

  /** The scrape targets as Prometheus sees them: health and last error. */
  targets(): Promise<ApiAnswer<{ activeTargets: { labels: Labels; health: string; lastError: string }[] }>> {
    return this.api('targets', [['state', 'active']]);
  }

  /** The one value of an instant query that must return one series. */
  async value(expr: string): Promise<number> {
    const r = await this.query(expr);
    if (!r.ok) throw new Error(`${expr}: ${r.error}`);
    if (r.data.result.length !== 1) throw new Error(`${expr} returned ${r.data.result.length} series`);
    return Number(r.data.result[0]!.value![1]);
  }

  /** Waits until pred holds for the value of expr (or the time is up, then throws). */
  async waitFor(expr: string, pred: (v: number) => boolean, what: string, timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.query(expr);
      const v = r.ok && r.data.result.length === 1 ? Number(r.data.result[0]!.value![1]) : NaN;
      if (pred(v)) return v;
      if (Date.now() > deadline) throw new Error(`prometheus: ${what}: ${expr} is ${r.ok ? v : r.error}\n${this.stderr}`);
      await sleep(200);
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGTERM');
      await exited;
    }
    await this.cleanup();
  }
}
