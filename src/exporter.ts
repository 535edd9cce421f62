// SPDX-License-Identifier: Apache-2.0
// The running exporter: checks the environment, serves HTTP, starts the
// requested probes, and undoes all of it on stop().
import fs from 'node:fs';
import path from 'node:path';
import { Registry } from 'prom-client';
import { EnvironmentError, UsageError } from './errors';
import { resolveCgroupDir, resolveFilters, resolvePort, type FilterSpec } from './filters';
import { closeFd, enableRunTimeStats, setLibbpfLogger, type BpfProgram } from './libbpf';
import type { Logger } from './log';
import { registerExporterMetrics } from './metrics/exporter';
import { ScrapeFailures } from './metrics/validate';
import { packageVersion } from './paths';
import type { Component, ProbeStatus, RunningComponent } from './component';
import type { ProbeOptions, RedirectOptions, SidecarSpec } from './options';
import { COMPONENTS, DEFAULT_OPTIONS, PROBE_NAMES } from './probes/registry';
import { TCP_PROBES } from './probes/tcp-lifecycle';
import { resolveSidecars } from './probes/sidecar';
import { ConnectionTracing, resolveTracing, type TracingConfig, type TracingSpec } from './tracing/tracing';
import { MAX_REDIRECT_PORTS } from './redirect/sock-redirect';
import { MetricsServer, type ListenAddress } from './server';
import { CAPABILITIES, cgroup2Mount, effectiveCapabilities, hasCapability } from './system';

export interface ExporterOptions {
  listen: ListenAddress;
  probes: readonly string[];
  filters: FilterSpec;
  enableBpfStats: boolean;
  acceptPortLimit: number;
  netstackSeriesTtl: number;
  /** spans over OTLP/HTTP, when an endpoint is given here or in OTEL_* */
  tracing?: TracingSpec;
  /** sidecar proxies to time */
  sidecars?: SidecarSpec;
  /** the connection events' ring buffer, bytes */
  eventRingBytes?: number;
  /** socket redirect, when wanted */
  redirect?: RedirectSpec;
}

export interface RedirectSpec {
  /** cgroup v2 directory (absolute, or relative to the cgroup2 mount), or
   * "kubepods"; required: redirect changes how the node's traffic flows */
  cgroup?: string;
  ports: readonly number[];
}

export const VMLINUX_BTF = '/sys/kernel/btf/vmlinux';

/** Fails with one clear line if this process cannot load tracing programs. */
export function checkPrivileges(): void {
  const eff = effectiveCapabilities();
  const admin = hasCapability(CAPABILITIES.CAP_SYS_ADMIN, eff);
  const bpf = hasCapability(CAPABILITIES.CAP_BPF, eff) && hasCapability(CAPABILITIES.CAP_PERFMON, eff);
  if (!admin && !bpf) {
    throw new EnvironmentError('not permitted to load BPF programs: run as root, or grant CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN');
  }
}

export function checkBtf(): void {
  if (!fs.existsSync(VMLINUX_BTF)) {
    throw new EnvironmentError(
      `kernel BTF is missing (${VMLINUX_BTF}): run a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian 11+, Ubuntu 20.10+, RHEL 8.2+)`,
    );
  }
}

/** The redirect's cgroup and ports, checked. */
export function resolveRedirect(spec: RedirectSpec): RedirectOptions {
  const mount = cgroup2Mount();
  if (!mount) throw new EnvironmentError('redirect needs cgroup v2, and none is mounted: mount -t cgroup2 none /sys/fs/cgroup');
  const cgroup = spec.cgroup?.trim();
  if (!cgroup) {
    throw new UsageError(
      `--redirect-cgroup is missing: name the cgroup whose sockets to redirect: kubepods (the pods of a Kubernetes node), ${mount} (every process of this host), or a directory under it`,
    );
  }
  const ports = [...new Set(spec.ports.map((p) => resolvePort(p, '--redirect-ports')))];
  if (ports.length > MAX_REDIRECT_PORTS) {
    throw new UsageError(`--redirect-ports: ${ports.length} ports; give at most ${MAX_REDIRECT_PORTS}`);
  }
  return { cgroup: resolveCgroupDir(cgroup === KUBEPODS ? podsCgroup(mount) : cgroup, '--redirect-cgroup'), ports };
}

/** --redirect-cgroup kubepods: the pods' cgroup of a Kubernetes node. */
export const KUBEPODS = 'kubepods';

/** Where kubelet puts pods under a cgroup2 mount: kubepods.slice (systemd
 * cgroup driver) or kubepods (cgroupfs). */
export function podsCgroup(mount: string): string {
  const found = ['kubepods.slice', 'kubepods'].map((d) => path.join(mount, d)).find((d) => fs.existsSync(d));
  if (!found) {
    throw new UsageError(
      `--redirect-cgroup ${KUBEPODS}: neither kubepods.slice (systemd cgroup driver) nor kubepods (cgroupfs) is under ${mount}; on a host that is not a Kubernetes node, name the cgroup to redirect`,
    );
  }
  return found;
}

export function checkProbeNames(probes: readonly string[], redirect: boolean): void {
  if (probes.length === 0 && !redirect) throw new UsageError(`--probes is empty; give some of ${PROBE_NAMES.join(',')}`);
  for (const p of probes) {
    if (!PROBE_NAMES.includes(p)) throw new UsageError(`--probes: unknown probe "${p}"; known probes: ${PROBE_NAMES.join(',')}`);
  }
}

export class Exporter {
  private readonly running: RunningComponent[] = [];
  private statsFd: number | undefined;
  private tracing: ConnectionTracing | undefined;
  private server: MetricsServer | undefined;
  private stopped = false;

  private constructor(
    private readonly opts: ExporterOptions,
    private readonly options: ProbeOptions,
    private readonly components: readonly Component[],
    private readonly log: Logger,
  ) {}

  /** Starts everything or throws UsageError / EnvironmentError, leaving nothing behind. */
  static async start(opts: ExporterOptions, log: Logger): Promise<Exporter> {
    checkProbeNames(opts.probes, opts.redirect !== undefined);
    const tracing = resolveTracing(opts.tracing ?? {});
    const sidecars = resolveSidecars(opts.sidecars ?? { comms: [], pids: [] });
    const tcp = opts.probes.some((p) => (TCP_PROBES as readonly string[]).includes(p));
    if (tracing && !tcp) {
      throw new UsageError(`spans come from the TCP probes: add one of ${TCP_PROBES.join(',')} to --probes, or give no OTLP endpoint`);
    }
    if (sidecars.length && !tcp) {
      throw new UsageError(`sidecars are timed by the TCP probes: add one of ${TCP_PROBES.join(',')} to --probes, or name no sidecar`);
    }
    const filters = resolveFilters(opts.filters);
    const options: ProbeOptions = {
      probes: opts.probes,
      redirect: opts.redirect && resolveRedirect(opts.redirect),
      acceptPortLimit: opts.acceptPortLimit,
      netstackSeriesTtl: opts.netstackSeriesTtl,
      sidecars,
      eventRingBytes: opts.eventRingBytes ?? DEFAULT_OPTIONS.eventRingBytes,
    };
    const components = COMPONENTS.filter((c) => c.wanted(options));
    checkPrivileges();
    checkBtf();
    for (const c of components) c.preflight?.(options);
    setLibbpfLogger(log.child('libbpf'));

    const exp = new Exporter(opts, options, components, log);
    try {
      await exp.startAll(filters, tracing);
    } catch (err) {
      await exp.stop();
      throw err;
    }
    return exp;
  }

  private async startAll(filters: ReturnType<typeof resolveFilters>, tracing: TracingConfig | undefined): Promise<void> {
    const registry = new Registry();
    const failures = new ScrapeFailures(registry, this.log.child('metrics'));
    registerExporterMetrics({
      registry,
      failures,
      version: packageVersion(),
      status: () => new Map([...this.status()].filter(([name]) => PROBE_NAMES.includes(name))),
      programs: () => this.programs(),
    });

    // bind first: a busy port fails before anything reaches the kernel
    this.server = await MetricsServer.listen(this.opts.listen, registry, () => this.readiness(), this.log.child('http'));
    this.log.info('listening', { address: formatAddress(this.server.address) });

    if (this.opts.enableBpfStats) {
      this.statsFd = enableRunTimeStats();
      this.log.info('BPF run time statistics on while running');
    }

    if (tracing) this.tracing = new ConnectionTracing(tracing, packageVersion(), registry, this.log.child('tracing'));
    const ctx = { events: this.tracing, log: this.log, filters, registry, failures, options: this.options };
    for (const c of this.components) {
      const running = c.start(ctx);
      this.running.push(running);
      for (const [probe, s] of running.status) {
        if (!c.probes.includes(probe)) continue;
        if (s.up) this.log.info('probe attached', { probe });
        else this.log.error('probe down', { probe, reason: s.reason });
      }
    }
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

  private readiness(): { ready: boolean; detail: string } {
    const status = this.status();
    const wanted = this.components.flatMap((c) => (c.probes.length ? this.opts.probes.filter((p) => c.probes.includes(p)) : [c.name]));
    const down = wanted.filter((p) => !status.get(p)?.up).map((p) => `${p} (${status.get(p)?.reason ?? 'starting'})`);
    return down.length ? { ready: false, detail: `not ready: ${down.join('; ')}` } : { ready: true, detail: 'ready' };
  }

  /** Detaches every link, closes every object and the server, in the reverse
   * order of starting. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const r of this.running.splice(0).reverse()) await r.close();
    // after the probes: the last events are spans in the queue by now
    await this.tracing?.shutdown();
    this.tracing = undefined;
    if (this.statsFd !== undefined) closeFd(this.statsFd);
    this.statsFd = undefined;
    await this.server?.close();
  }
}

export function formatAddress(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
