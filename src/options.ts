// SPDX-License-Identifier: Apache-2.0
// What the components are given: each option resolved and checked.
export interface ProbeOptions {
  /** the probes asked for (--probes) */
  probes: readonly string[];
  /** the socket redirect, when asked for */
  redirect?: RedirectOptions;
  /** how many distinct listening ports get their own accepts series */
  acceptPortLimit: number;
  /** seconds without a sample after which a netsubsys series is forgotten; 0: never */
  netstackSeriesTtl: number;
  /** sidecar proxies to time (--sidecar-comm, --sidecar-pid) */
  sidecars: readonly Sidecar[];
  /** size of the connection events' ring buffer: a power of two, at least a page */
  eventRingBytes: number;
}

export interface RedirectOptions {
  /** cgroup v2 directory and its id */
  cgroup: { dir: string; id: bigint };
  /** only pairs with one of these ports (either end); empty: all */
  ports: readonly number[];
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
