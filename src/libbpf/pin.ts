// SPDX-License-Identifier: Apache-2.0
// Pins in bpffs: a map, program or link kept alive by a path instead of a
// descriptor, so that it outlives the process (or is found again after a crash).
import { check } from './errors';
import { native } from './native';

/** Pins the object behind fd at path (in a mounted bpffs). */
export function pinObject(fd: number, path: string): void {
  check(`pin ${path}`, () => native.objPin(fd, path) as number);
}

/** A new descriptor for what is pinned at path. Close it with closeFd. */
export function openPinned(path: string): number {
  return check(`open pinned ${path}`, () => native.objGet(path) as number);
}

export function closeFd(fd: number): void {
  native.close(fd);
}
