// SPDX-License-Identifier: Apache-2.0
// What every probe module provides. Several probes may share one BPF object
// (connect, accept and close share the TCP state program), so modules are
// started as groups: one start() for all the requested probes of a group.
import type { Registry } from 'prom-client';
import type { BpfObject, BpfProgram } from '../libbpf';
import type { Logger } from '../log';
import type { ScrapeFailures } from '../metrics/validate';
import type { FilteredObject, ResolvedFilters } from '../filters';
import type { ConnEvent } from '../tracing/conn-event';

export interface ProbeStatus {
  up: boolean;
  /** why not, when down */
  reason?: string;
}

export interface ProbeContext {
  log: Logger;
  filters: ResolvedFilters;
  registry: Registry;
  failures: ScrapeFailures;
  options: ProbeOptions;
  /** where connection events go, when spans are wanted; undefined: no events */
  events?: ConnEventSink;
}

export interface ConnEventSink {
  onConnEvent(e: ConnEvent): void;
}

export interface ProbeOptions {
  /** how many distinct listening ports get their own accepts series */
  acceptPortLimit: number;
  /** seconds without a sample after which a netsubsys series is forgotten; 0: never */
  netstackSeriesTtl: number;
  /** sidecar proxies to time (--sidecar-comm, --sidecar-pid) */
  sidecars: readonly Sidecar[];
  /** size of the connection events' ring buffer: a power of two, at least a page */
  eventRingBytes: number;
}

export interface RunningGroup {
  /** one entry per requested probe of this group */
  readonly status: ReadonlyMap<string, ProbeStatus>;
  /** loaded programs, for the kernel's run statistics */
  programs(): BpfProgram[];
  /** loaded objects holding filter maps */
  objects(): BpfObject<FilteredObject>[];
  /** detaches every link and closes every object; safe to call twice */
  close(): void | Promise<void>;
}

export interface ProbeGroup {
  /** probe names this group provides, as given to --probes */
  readonly probes: readonly string[];
  /** loads, attaches and registers metrics for the requested probes. Never
   * throws for a probe that cannot run: it reports it down in status. */
  start(requested: readonly string[], ctx: ProbeContext): RunningGroup;
}

export interface SidecarSpec {
  comms: readonly string[];
  pids: readonly number[];
}

/** A sidecar as the kernel matches it: its label, and its command or pids. */
export interface Sidecar {
  name: string;
  comms: string[];
  pids: number[];
}
