// SPDX-License-Identifier: Apache-2.0
// The running exporter: checks the environment, serves HTTP, starts the
// requested probes, and undoes all of it on stop().
import { Registry } from 'prom-client';
import { buildInfo } from './build-info';
import { closeFd, enableRunTimeStats, setLibbpfLogger, type BpfProgram } from './libbpf';
import type { Logger } from './log';
import { registerExporterMetrics } from './metrics/exporter';
import { ScrapeFailures } from './metrics/validate';
import { packageVersion } from './paths';
import { checkObjectFile, type Component, type ProbeStatus, type RunningComponent } from './component';
import { PROBE_NAMES, resolveOptions, type ExporterOptions, type Options } from './options';
import { COMPONENTS } from './probes/registry';
import { ConnectionTracing } from './tracing/tracing';
import { MetricsServer, type ListenAddress } from './server';
import { checkBtf, checkPrivileges, checkStatsPrivilege } from './system';

/** A component the options ask for, with its part of them. */
interface Wanted {
  component: Component;
  options: unknown;
}

export class Exporter {
  private readonly running: RunningComponent[] = [];
  private statsFd: number | undefined;
  private tracing: ConnectionTracing | undefined;
  private server: MetricsServer | undefined;
  private stopped = false;
  private started = false;

  private constructor(
    private readonly options: Options,
    private readonly wanted: readonly Wanted[],
    private readonly log: Logger,
  ) {}

  /** Starts everything or throws UsageError / EnvironmentError, leaving nothing behind. */
  static async start(opts: ExporterOptions, log: Logger): Promise<Exporter> {
    const options = resolveOptions(opts);
    const wanted = COMPONENTS.flatMap((component) => {
      const own = component.select(options);
      return own === undefined ? [] : [{ component, options: own }];
    });
    for (const r of options.renamed) log.warn('probe renamed: give the new name, the old one goes in a later release', { probe: r.given, now: r.now });
    checkPrivileges();
    if (options.enableBpfStats) checkStatsPrivilege();
    checkBtf();
    for (const w of wanted) {
      w.component.preflight?.(w.options);
      checkObjectFile(w.component);
    }
    setLibbpfLogger(log.child('libbpf'));

    const exp = new Exporter(options, wanted, log);
    try {
      await exp.startAll();
    } catch (err) {
      await exp.stop();
      throw err;
    }
    return exp;
  }

  private async startAll(): Promise<void> {
    const registry = new Registry();
    const failures = new ScrapeFailures(registry, this.log.child('metrics'));
    registerExporterMetrics({
      registry,
      failures,
      build: buildInfo(),
      status: () => new Map([...this.status()].filter(([name]) => PROBE_NAMES.includes(name))),
      programs: () => this.programs(),
    });

    // bind first: a busy port fails before anything reaches the kernel
    this.server = await MetricsServer.listen(
      this.options.listen,
      registry,
      () => this.readiness(),
      this.log.child('http'),
      { maxConnections: this.options.httpConnectionLimit },
      this.options.webConfig,
    );
    this.log.info('listening', {
      address: formatAddress(this.server.address),
      tls: this.options.webConfig && this.server.tls,
      basic_auth: this.options.webConfig && this.options.webConfig.users.size > 0,
    });

    if (this.options.enableBpfStats) {
      this.statsFd = enableRunTimeStats();
      this.log.info('BPF run time statistics on while running');
    }

    const { tracing, filters } = this.options;
    if (tracing) this.tracing = new ConnectionTracing(tracing, packageVersion(), registry, this.log.child('tracing'));
    for (const { component, options } of this.wanted) {
      const running = component.start({ events: this.tracing, log: this.log, filters, registry, failures, options });
      this.running.push(running);
      for (const [probe, s] of running.status) {
        if (!component.probes.includes(probe)) continue;
        if (s.up) this.log.info('probe attached', { probe });
        else this.log.error('probe down', { probe, reason: s.reason });
      }
    }
    this.started = true;
  }

  get address(): ListenAddress | undefined {
    return this.server?.address;
  }

  /** Each requested probe's status, and each feature's (redirect) by its name. */
  status(): Map<string, ProbeStatus> {
    const all = new Map<string, ProbeStatus>();
    for (const r of this.running) for (const [p, s] of r.status) all.set(p, s);
    return all;
  }

  programs(): BpfProgram[] {
    return this.running.flatMap((r) => r.programs());
  }

  componentsRunning(): readonly RunningComponent[] {
    return this.running;
  }

  /** Ready once /metrics serves everything started; with --readiness
   * all-probes, only while every requested probe is attached too. */
  private readiness(): { ready: boolean; detail: string } {
    if (!this.started) return { ready: false, detail: 'not ready: starting' };
    const status = this.status();
    const wanted = this.wanted.flatMap(({ component: c }) => (c.probes.length ? this.options.probes.filter((p) => c.probes.includes(p)) : [c.name]));
    const down = wanted.filter((p) => !status.get(p)?.up).map((p) => `${p} (${status.get(p)?.reason ?? 'starting'})`);
    if (!down.length) return { ready: true, detail: 'ready' };
    if (this.options.readiness === 'all-probes') return { ready: false, detail: `not ready: ${down.join('; ')}` };
    return { ready: true, detail: `ready; down: ${down.join('; ')}` };
  }

  /** Stops sending spans (within a bounded time, whatever the collector
   * does), closes the server, then detaches every link and closes every
   * object: /metrics serves real samples until it closes. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // while the probes still run: events from here on are counted as dropped
    await this.tracing?.shutdown();
    await this.server?.close();
    for (const r of this.running.splice(0).reverse()) await r.close();
    this.tracing = undefined;
    if (this.statsFd !== undefined) closeFd(this.statsFd);
    this.statsFd = undefined;
  }
}

export function formatAddress(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
