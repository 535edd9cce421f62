// SPDX-License-Identifier: Apache-2.0
// A BPF object file: open, configure (constants, map sizes, which programs to
// load), load into the kernel, find maps and programs, close. An object holds
// kernel resources once loaded and must be closed; its links are separate and
// must be destroyed first.
import {
  checkBinding,
  structLayout,
  type FieldName,
  type GlobalName,
  type MapName,
  type ObjectBinding,
  type ProgramName,
  type SettingName,
  type StructName,
} from './binding';
import { Btf } from './btf';
import { BpfError, check, checkPtr } from './errors';
import { bindLayout, LayoutError, type Layout, type StructSpec } from './layout';
import { BpfMap } from './map';
import { native, readBytes, viewBytes, type Ptr } from './native';
import { BpfProgram } from './program';

export type Constant = boolean | number | bigint;

/** An object; with a generated binding B (src/generated/), its maps,
 * programs, settings and structs are named by the binding's types. */
export class BpfObject<B extends ObjectBinding = ObjectBinding> {
  private ptr: Ptr | null;
  private loaded = false;
  readonly btf: Btf;
  private readonly maps = new Map<string, BpfMap>();

  private constructor(
    ptr: Ptr,
    readonly path: string,
    readonly binding?: B,
  ) {
    this.ptr = ptr;
    const btfPtr = checkPtr(`BTF of ${path}`, () => native.objectBtf(ptr) as Ptr | null);
    const size = [0];
    const raw = checkPtr(`raw BTF of ${path}`, () => native.btfRawData(btfPtr, size) as Ptr | null);
    this.btf = new Btf(readBytes(raw, size[0]!));
  }

  /** Opens (parses) an object file; nothing reaches the kernel yet. */
  static open<B extends ObjectBinding = ObjectBinding>(path: string, binding?: B): BpfObject<B> {
    const obj = new BpfObject<B>(
      checkPtr(`open BPF object ${path}`, () => native.openFile(path, null) as Ptr | null),
      path,
      binding,
    );
    if (binding) {
      try {
        checkBinding(binding, obj.btf, path);
        for (const [name, m] of Object.entries(binding.maps)) {
          const n = native.mapMaxEntries(obj.mapPtr(name)) as number;
          if (n !== m.maxEntries)
            throw new LayoutError(`${path}: map ${name} has ${n} entries, the exporter was built for ${m.maxEntries}: rebuild both (npm run build)`);
        }
      } catch (err) {
        obj.close();
        throw err;
      }
    }
    return obj;
  }

  /** Sets const volatile globals (in .rodata) before load; the verifier then
   * treats them as constants and drops code they switch off. */
  setConstants(values: Partial<Record<SettingName<B>, Constant>>): void {
    this.beforeLoad('set constants');
    const map = this.mapPtr('.rodata');
    const size = [0];
    const data = checkPtr(`initial value of ${this.path} .rodata`, () => native.mapInitialValue(map, size) as Ptr | null);
    const view = viewBytes(data, size[0]!);
    for (const [name, value] of Object.entries(values) as [string, Constant][]) {
      const v = this.btf.variable('.rodata', name);
      if (!v) throw new Error(`${this.path} has no constant ${name}`);
      const n = typeof value === 'boolean' ? BigInt(value ? 1 : 0) : BigInt(value);
      switch (v.size) {
        case 1:
          view.writeUInt8(Number(n), v.offset);
          break;
        case 2:
          view.writeUInt16LE(Number(n), v.offset);
          break;
        case 4:
          view.writeUInt32LE(Number(BigInt.asUintN(32, n)), v.offset);
          break;
        case 8:
          view.writeBigUInt64LE(BigInt.asUintN(64, n), v.offset);
          break;
        default:
          throw new Error(`constant ${name} is ${v.size} bytes: set it as a number of 1, 2, 4 or 8 bytes`);
      }
    }
  }

  setMaxEntries(mapName: MapName<B>, maxEntries: number): void {
    this.beforeLoad('resize maps');
    const map = this.mapPtr(mapName);
    check(`set max_entries of ${mapName}`, () => native.mapSetMaxEntries(map, maxEntries) as number);
  }

  /** Whether load creates this map (on by default); a map no loaded
   * program uses can be left out. */
  setAutocreate(mapName: MapName<B>, create: boolean): void {
    this.beforeLoad('choose maps');
    const map = this.mapPtr(mapName);
    check(`set autocreate of ${mapName}`, () => native.mapSetAutocreate(map, create) as number);
  }

  /** Shares an existing map (by descriptor) instead of creating this object's own. */
  reuseMap(mapName: MapName<B>, fd: number): void {
    this.beforeLoad('reuse maps');
    const map = this.mapPtr(mapName);
    check(`reuse map ${mapName}`, () => native.mapReuseFd(map, fd) as number);
  }

  /** Loads every program whose autoload is on and creates the maps. A verifier
   * rejection carries the verifier's log in BpfError.log. */
  load(): void {
    this.beforeLoad('load');
    const ptr = this.live();
    check(`load BPF object ${this.path}`, () => native.objectLoad(ptr) as number);
    this.loaded = true;
  }

  get isLoaded(): boolean {
    return this.loaded;
  }

  program(name: ProgramName<B>): BpfProgram {
    const ptr = this.live();
    return new BpfProgram(checkPtr(`find program ${name} in ${this.path}`, () => native.findProgram(ptr, name) as Ptr | null));
  }

  programs(): BpfProgram[] {
    const ptr = this.live();
    const out: BpfProgram[] = [];
    let prog = native.nextProgram(ptr, null) as Ptr | null;
    while (prog) {
      out.push(new BpfProgram(prog));
      prog = native.nextProgram(ptr, prog) as Ptr | null;
    }
    return out;
  }

  /** A map of the loaded object. */
  map(name: MapName<B> | '.bss' | '.data' | '.rodata'): BpfMap {
    let m = this.maps.get(name);
    if (m) return m;
    if (!this.loaded) throw new Error(`map ${name}: load ${this.path} first`);
    const ptr = this.mapPtr(name);
    const fd = native.mapFd(ptr) as number;
    if (fd < 0) throw new BpfError(`fd of map ${name}`, -fd);
    m = new BpfMap(
      name,
      fd,
      native.mapType(ptr) as number,
      native.mapKeySize(ptr) as number,
      native.mapValueSize(ptr) as number,
      native.mapMaxEntries(ptr) as number,
    );
    this.maps.set(name, m);
    return m;
  }

  /** A global variable of the loaded object (in .bss or .data), read now, as
   * an unsigned little-endian integer of its size. */
  readGlobal(section: '.bss' | '.data', name: GlobalName<B>): bigint {
    const v = this.btf.variable(section, name);
    if (!v) throw new Error(`${this.path} has no variable ${name} in ${section}`);
    const value = this.map(section).lookup(Buffer.alloc(4));
    if (!value) throw new Error(`${this.path}: ${section} is empty`);
    return v.size === 8 ? value.readBigUInt64LE(v.offset) : BigInt(value.readUIntLE(v.offset, v.size));
  }

  /** The layout of a struct shared with the BPF code, from the generated binding. */
  struct<S extends StructName<B>>(name: S): Layout<FieldName<B, S>> {
    if (!this.binding) throw new Error(`${this.path}: opened without its binding`);
    return structLayout(this.binding, name);
  }

  /** The layout of a struct shared with the BPF code, checked against BTF. */
  layout(spec: StructSpec): Layout {
    return bindLayout(this.btf, spec);
  }

  /** Frees the object: its maps and programs leave the kernel unless a link
   * or pin still holds them. Safe to call twice. */
  close(): void {
    if (this.ptr === null) return;
    native.objectClose(this.ptr);
    this.ptr = null;
    this.maps.clear();
  }

  private mapPtr(name: string): Ptr {
    const ptr = this.live();
    return checkPtr(`find map ${name} in ${this.path}`, () => native.findMap(ptr, name) as Ptr | null);
  }

  private beforeLoad(what: string): void {
    if (this.loaded) throw new Error(`${this.path}: cannot ${what} after load`);
  }

  private live(): Ptr {
    if (this.ptr === null) throw new Error(`${this.path} was closed`);
    return this.ptr;
  }
}
