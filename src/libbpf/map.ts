// SPDX-License-Identifier: Apache-2.0
// A loaded BPF map, by descriptor: lookup, update, delete, iteration and batch
// reads. Keys and values are Buffers; per-CPU maps hold one value per possible
// CPU, each padded to 8 bytes, as the kernel returns them.
import { BpfError, check } from './errors';
import { mapInfo } from './info';
import { native } from './native';

export const MapType = {
  Hash: 1,
  Array: 2,
  PerCpuHash: 5,
  PerCpuArray: 6,
  LruHash: 9,
  LruPerCpuHash: 10,
  PerCpuCgroupStorage: 21,
  SockHash: 18,
  RingBuf: 27,
} as const;

export const UpdateFlags = { Any: 0n, NoExist: 1n, Exist: 2n } as const;

const ENOENT = 2;
const ENOSPC = 28;

let possibleCpus: number | undefined;

/** Number of possible CPUs: the stride of per-CPU map values. */
export function numPossibleCpus(): number {
  possibleCpus ??= check('libbpf_num_possible_cpus', () => native.numPossibleCpus() as number);
  return possibleCpus;
}

export interface MapEntry {
  key: Buffer;
  value: Buffer;
}

export class BpfMap {
  readonly perCpu: boolean;
  /** bytes of one CPU's value inside a per-CPU value buffer */
  readonly stride: number;
  /** bytes of a whole value buffer (all CPUs for per-CPU maps) */
  readonly valueBufferSize: number;

  constructor(
    readonly name: string,
    readonly fd: number,
    readonly type: number,
    readonly keySize: number,
    readonly valueSize: number,
    readonly maxEntries: number,
  ) {
    this.perCpu = ([MapType.PerCpuHash, MapType.PerCpuArray, MapType.LruPerCpuHash, MapType.PerCpuCgroupStorage] as number[]).includes(type);
    this.stride = this.perCpu ? Math.ceil(valueSize / 8) * 8 : valueSize;
    this.valueBufferSize = this.perCpu ? this.stride * numPossibleCpus() : valueSize;
  }

  /** A map pinned at path by this or an earlier process. Close it with close(). */
  static openPinned(path: string): BpfMap {
    const fd = check(`open pinned map ${path}`, () => native.objGet(path) as number);
    try {
      const info = mapInfo(fd);
      return new BpfMap(info.name, fd, info.type, info.keySize, info.valueSize, info.maxEntries);
    } catch (err) {
      native.close(fd);
      throw err;
    }
  }

  /** Pins the map at path (in a mounted bpffs); remove the pin with fs.rmSync. */
  pin(path: string): void {
    check(`pin map ${this.name} at ${path}`, () => native.objPin(this.fd, path) as number);
  }

  /** Closes the descriptor: only for maps from openPinned (an object closes its own). */
  close(): void {
    native.close(this.fd);
  }

  key(): Buffer {
    return Buffer.alloc(this.keySize);
  }

  /** The value for key, or undefined if there is none. */
  lookup(key: Buffer, into: Buffer = Buffer.alloc(this.valueBufferSize)): Buffer | undefined {
    const ret = native.lookup(this.fd, key, into) as number;
    if (ret === -ENOENT) return undefined;
    if (ret < 0) throw new BpfError(`lookup in map ${this.name}`, -ret);
    return into;
  }

  /** The value at index of an array map (u32 keys), which holds every
   * index below its size. */
  at(index: number): Buffer {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(index);
    const value = this.lookup(key);
    if (!value) throw new Error(`${this.name}[${index}] is missing`);
    return value;
  }

  /** A per-CPU array's u64 counter at index (first field), summed over CPUs. */
  counterAt(index: number): number {
    return sumPerCpu(this.at(index), this.stride, 0);
  }

  update(key: Buffer, value: Buffer, flags: bigint = UpdateFlags.Any): void {
    check(`update map ${this.name}`, () => native.update(this.fd, key, value, flags) as number);
  }

  /** Deletes key; false if it was not there. */
  delete(key: Buffer): boolean {
    const ret = native.delete(this.fd, key) as number;
    if (ret === -ENOENT) return false;
    if (ret < 0) throw new BpfError(`delete from map ${this.name}`, -ret);
    return true;
  }

  /** All keys, in the kernel's order. Entries may come and go meanwhile. */
  *keys(): Generator<Buffer> {
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      const ret = native.nextKey(this.fd, prev, next) as number;
      if (ret === -ENOENT) return;
      if (ret < 0) throw new BpfError(`iterate map ${this.name}`, -ret);
      yield next;
      prev = next;
    }
  }

  /** Every entry, read in batches of up to batchSize (one system call each). */
  entries(batchSize = 256): MapEntry[] {
    return this.batch(false, batchSize);
  }

  /** Every entry, removed from the map as it is read. */
  drain(batchSize = 256): MapEntry[] {
    return this.batch(true, batchSize);
  }

  private batch(remove: boolean, batchSize: number): MapEntry[] {
    const op = remove ? 'lookup_and_delete_batch' : 'lookup_batch';
    const call = remove ? native.lookupAndDeleteBatch : native.lookupBatch;
    const out: MapEntry[] = [];
    const tokenSize = Math.max(this.keySize, 8);
    let inBatch: Buffer | null = null;
    let size = batchSize;
    for (;;) {
      const outBatch = Buffer.alloc(tokenSize);
      const keys = Buffer.alloc(this.keySize * size);
      const values = Buffer.alloc(this.valueBufferSize * size);
      const count = [size];
      const ret = call(this.fd, inBatch, outBatch, keys, values, count, null) as number;
      if (ret < 0 && ret !== -ENOENT) {
        if (ret === -ENOSPC && size < this.maxEntries) {
          size *= 2; // a hash bucket holds more entries than fit: retry larger
          continue;
        }
        throw new BpfError(`${op} on map ${this.name}`, -ret);
      }
      for (let i = 0; i < count[0]!; i++) {
        out.push({
          key: keys.subarray(i * this.keySize, (i + 1) * this.keySize),
          value: values.subarray(i * this.valueBufferSize, (i + 1) * this.valueBufferSize),
        });
      }
      if (ret === -ENOENT) return out;
      inBatch = outBatch;
    }
  }
}

/** Sum of a u64 at offset over every CPU's copy in a per-CPU value buffer
 * (as a number: exact to 2^53; summed as numbers, as a scrape sums many). */
export function sumPerCpu(value: Buffer, stride: number, offset: number): number {
  let sum = 0;
  for (let base = 0; base < value.length; base += stride) {
    sum += value.readUInt32LE(base + offset + 4) * 0x1_0000_0000 + value.readUInt32LE(base + offset);
  }
  return sum;
}
