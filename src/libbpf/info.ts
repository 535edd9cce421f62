// SPDX-License-Identifier: Apache-2.0
// What the kernel knows about a loaded program (struct bpf_prog_info): read
// with bpf_obj_get_info_by_fd, laid out as the running kernel's BTF says.
import fs from 'node:fs';
import { Btf } from './btf';
import { check } from './errors';
import { bindLayout, type Layout } from './layout';
import { native } from './native';
import { cString } from './text';

export interface ProgramInfo {
  id: number;
  name: string;
  /** total time in the program; counted only while BPF statistics are on */
  runTimeNs: number;
  runCount: number;
  /** runs the kernel skipped because the program was already running on that CPU */
  recursionMisses: number;
}

const VMLINUX_BTF = '/sys/kernel/btf/vmlinux';
let kernelBtf: Btf | undefined;

/** The running kernel's BTF, read once. */
export function vmlinuxBtf(): Btf {
  kernelBtf ??= new Btf(fs.readFileSync(VMLINUX_BTF));
  return kernelBtf;
}

let progInfoLayout: Layout | undefined;

function layout(): Layout {
  progInfoLayout ??= bindLayout(vmlinuxBtf(), {
    struct: 'bpf_prog_info',
    fields: {
      id: 'u32',
      name: { array: 'u8', length: 16 },
      run_time_ns: 'u64',
      run_cnt: 'u64',
      recursion_misses: 'u64',
    },
  });
  return progInfoLayout;
}

export function programInfo(fd: number): ProgramInfo {
  const l = layout();
  const buf = Buffer.alloc(l.size);
  check('bpf_obj_get_info_by_fd', () => native.objInfo(fd, buf, [buf.length]) as number);
  return {
    id: buf.readUInt32LE(l.offset('id')),
    name: cString(buf, l.offset('name'), 16),
    runTimeNs: Number(buf.readBigUInt64LE(l.offset('run_time_ns'))),
    runCount: Number(buf.readBigUInt64LE(l.offset('run_cnt'))),
    recursionMisses: Number(buf.readBigUInt64LE(l.offset('recursion_misses'))),
  };
}

/** Turns on the kernel's per-program run time statistics for as long as the
 * returned descriptor stays open (BPF_ENABLE_STATS), like kernel.bpf_stats_enabled=1. */
export function enableRunTimeStats(): number {
  const BPF_STATS_RUN_TIME = 0;
  return check('bpf_enable_stats', () => native.enableStats(BPF_STATS_RUN_TIME) as number);
}

export interface MapInfo {
  id: number;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  name: string;
}

let mapInfoLayout: Layout | undefined;

/** Type, sizes and name of the map behind fd (struct bpf_map_info). */
export function mapInfo(fd: number): MapInfo {
  mapInfoLayout ??= bindLayout(vmlinuxBtf(), {
    struct: 'bpf_map_info',
    fields: { type: 'u32', id: 'u32', key_size: 'u32', value_size: 'u32', max_entries: 'u32', name: { array: 'u8', length: 16 } },
  });
  const l = mapInfoLayout;
  const buf = Buffer.alloc(l.size);
  check('bpf_obj_get_info_by_fd', () => native.objInfo(fd, buf, [buf.length]) as number);
  return {
    id: buf.readUInt32LE(l.offset('id')),
    type: buf.readUInt32LE(l.offset('type')),
    keySize: buf.readUInt32LE(l.offset('key_size')),
    valueSize: buf.readUInt32LE(l.offset('value_size')),
    maxEntries: buf.readUInt32LE(l.offset('max_entries')),
    name: cString(buf, l.offset('name'), 16),
  };
}

/** The system libbpf's version, MAJOR.MINOR (as libbpf itself reports it). */
export function libbpfVersion(): string {
  return `${native.majorVersion() as number}.${native.minorVersion() as number}`;
}
