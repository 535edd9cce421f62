// SPDX-License-Identifier: Apache-2.0
// Integration tests need root (BPF, namespaces). On CI (CI=true) a missing
// privilege fails the suite; elsewhere the suite says why and stops.
export function requireRoot(): void {
  if (process.getuid?.() === 0) return;
  throw new Error('integration tests need root (BPF programs, network namespaces): run them with sudo');
}
