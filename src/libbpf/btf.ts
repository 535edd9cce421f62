// SPDX-License-Identifier: Apache-2.0
// A reader of BTF, the kernel's type format (Documentation/bpf/btf.rst), so that
// struct layouts shared with BPF C come from the compiled object instead of
// being copied by hand: offsets, sizes, array lengths, enum values, and where
// each global variable sits in its data section.

export const enum Kind {
  Int = 1,
  Ptr,
  Array,
  Struct,
  Union,
  Enum,
  Fwd,
  Typedef,
  Volatile,
  Const,
  Restrict,
  Func,
  FuncProto,
  Var,
  Datasec,
  Float,
  DeclTag,
  TypeTag,
  Enum64,
}

export interface Member {
  name: string;
  type: number;
  /** in bits from the start of the struct */
  bitOffset: number;
  /** 0 unless a bitfield */
  bitSize: number;
}

export interface BtfType {
  id: number;
  kind: Kind;
  name: string;
  /** size in bytes (Int, Struct, Union, Enum, Datasec, Float) or referenced type id */
  sizeOrType: number;
  members?: Member[];
  array?: { type: number; nelems: number };
  enumValues?: Map<string, bigint>;
  secinfo?: { type: number; offset: number; size: number }[];
  intBits?: number;
  /** Int: 1 signed, 2 char, 4 bool (BTF_INT_ENCODING) */
  intEncoding?: number;
  /** Func, Var: 0 static, 1 global, 2 extern */
  linkage?: number;
}

/** A field of a struct as userspace reads it. */
export interface FieldLayout {
  offset: number;
  size: number;
  /** element count if the field is an array, else undefined */
  length?: number;
}

const MAGIC = 0xeb9f;

/** Bytes that follow the 12-byte common header of a type record. */
function trailerSize(info: number, id: number): number {
  const vlen = info & 0xffff;
  switch ((info >>> 24) & 0x1f) {
    case Kind.Int:
    case Kind.Var:
    case Kind.DeclTag:
      return 4;
    case Kind.Array:
      return 12;
    case Kind.Struct:
    case Kind.Union:
    case Kind.Datasec:
    case Kind.Enum64:
      return 12 * vlen;
    case Kind.Enum:
    case Kind.FuncProto:
      return 8 * vlen;
    case Kind.Ptr:
    case Kind.Fwd:
    case Kind.Typedef:
    case Kind.Volatile:
    case Kind.Const:
    case Kind.Restrict:
    case Kind.Func:
    case Kind.Float:
    case Kind.TypeTag:
      return 0;
    default:
      throw new Error(`unknown BTF kind ${(info >>> 24) & 0x1f} at type ${id}`);
  }
}
const HEADER_FIXED = 24;

export class Btf {
  private readonly buf: Buffer;
  private readonly strOff: number;
  private readonly strLen: number;
  /** where each type's record starts; index 0 is void */
  private readonly starts: Uint32Array;
  private readonly cache = new Map<number, BtfType>();

  constructor(data: Uint8Array) {
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (buf.length < HEADER_FIXED || buf.readUInt16LE(0) !== MAGIC) {
      throw new Error('not BTF data (bad magic), or not little-endian');
    }
    const hdrLen = buf.readUInt32LE(4);
    const typeOff = hdrLen + buf.readUInt32LE(8);
    const typeLen = buf.readUInt32LE(12);
    this.buf = buf;
    this.strOff = hdrLen + buf.readUInt32LE(16);
    this.strLen = buf.readUInt32LE(20);

    // One pass over the records to find where each starts; decoding is lazy,
    // since a kernel's BTF holds over 100,000 types and callers need a few.
    const starts: number[] = [0];
    let pos = typeOff;
    const end = typeOff + typeLen;
    while (pos < end) {
      starts.push(pos);
      pos += 12 + trailerSize(buf.readUInt32LE(pos + 4), starts.length - 1);
    }
    this.starts = Uint32Array.from(starts);
  }

  private str(off: number): string {
    if (off >= this.strLen) throw new Error(`BTF string offset ${off} out of range`);
    const start = this.strOff + off;
    return this.buf.toString('utf8', start, this.buf.indexOf(0, start));
  }

  private decode(id: number): BtfType {
    const buf = this.buf;
    let pos = this.starts[id]!;
    const name = this.str(buf.readUInt32LE(pos));
    const info = buf.readUInt32LE(pos + 4);
    const sizeOrType = buf.readUInt32LE(pos + 8);
    const vlen = info & 0xffff;
    const kind = ((info >>> 24) & 0x1f) as Kind;
    const kindFlag = info >>> 31 === 1;
    pos += 12;
    const t: BtfType = { id, kind, name, sizeOrType };
    switch (kind) {
      case Kind.Int:
        t.intBits = buf.readUInt32LE(pos) & 0xff;
        t.intEncoding = buf.readUInt32LE(pos) >>> 24;
        break;
      case Kind.Var:
        t.linkage = buf.readUInt32LE(pos);
        break;
      case Kind.Func:
        t.linkage = vlen;
        break;
      case Kind.Array:
        t.array = { type: buf.readUInt32LE(pos), nelems: buf.readUInt32LE(pos + 8) };
        break;
      case Kind.Struct:
      case Kind.Union:
        t.members = [];
        for (let i = 0; i < vlen; i++, pos += 12) {
          const offset = buf.readUInt32LE(pos + 8);
          t.members.push({
            name: this.str(buf.readUInt32LE(pos)),
            type: buf.readUInt32LE(pos + 4),
            bitOffset: kindFlag ? offset & 0xffffff : offset,
            bitSize: kindFlag ? offset >>> 24 : 0,
          });
        }
        break;
      case Kind.Enum:
        t.enumValues = new Map();
        for (let i = 0; i < vlen; i++, pos += 8) {
          const v = kindFlag ? buf.readInt32LE(pos + 4) : buf.readUInt32LE(pos + 4);
          t.enumValues.set(this.str(buf.readUInt32LE(pos)), BigInt(v));
        }
        break;
      case Kind.Enum64:
        t.enumValues = new Map();
        for (let i = 0; i < vlen; i++, pos += 12) {
          const v = (BigInt(buf.readUInt32LE(pos + 8)) << 32n) | BigInt(buf.readUInt32LE(pos + 4));
          t.enumValues.set(this.str(buf.readUInt32LE(pos)), kindFlag ? BigInt.asIntN(64, v) : v);
        }
        break;
      case Kind.Datasec:
        t.secinfo = [];
        for (let i = 0; i < vlen; i++, pos += 12) {
          t.secinfo.push({
            type: buf.readUInt32LE(pos),
            offset: buf.readUInt32LE(pos + 4),
            size: buf.readUInt32LE(pos + 8),
          });
        }
        break;
    }
    return t;
  }

  get count(): number {
    return this.starts.length - 1;
  }

  type(id: number): BtfType {
    if (id <= 0 || id >= this.starts.length) throw new Error(`no BTF type ${id}`);
    let t = this.cache.get(id);
    if (!t) {
      t = this.decode(id);
      this.cache.set(id, t);
    }
    return t;
  }

  /** The first type of this name and kind, found by comparing the raw name bytes. */
  find(name: string, kind: Kind): BtfType | undefined {
    const want = Buffer.from(name + '\0');
    const buf = this.buf;
    for (let id = 1; id < this.starts.length; id++) {
      const pos = this.starts[id]!;
      if (((buf.readUInt32LE(pos + 4) >>> 24) & 0x1f) !== kind) continue;
      const start = this.strOff + buf.readUInt32LE(pos);
      if (buf.compare(want, 0, want.length, start, start + want.length) === 0) return this.type(id);
    }
    return undefined;
  }

  /** The type behind typedefs and qualifiers. */
  resolve(id: number): BtfType {
    let t = this.type(id);
    while ([Kind.Typedef, Kind.Volatile, Kind.Const, Kind.Restrict, Kind.TypeTag].includes(t.kind)) {
      t = this.type(t.sizeOrType);
    }
    return t;
  }

  sizeOf(id: number): number {
    const t = this.resolve(id);
    switch (t.kind) {
      case Kind.Int:
      case Kind.Struct:
      case Kind.Union:
      case Kind.Enum:
      case Kind.Enum64:
      case Kind.Float:
      case Kind.Datasec:
        return t.sizeOrType;
      case Kind.Ptr:
        return 8;
      case Kind.Array:
        return t.array!.nelems * this.sizeOf(t.array!.type);
      default:
        throw new Error(`BTF type ${id} (${t.name || 'anonymous'}) has no size`);
    }
  }

  struct(name: string): BtfType {
    const t = this.find(name, Kind.Struct);
    if (!t) throw new Error(`struct ${name} is not in the object's BTF`);
    return t;
  }

  /** Byte offset, size and (for arrays) length of each member of a struct. */
  layout(structName: string): { size: number; fields: Map<string, FieldLayout> } {
    const t = this.struct(structName);
    const fields = new Map<string, FieldLayout>();
    for (const m of t.members!) {
      if (m.bitSize || m.bitOffset % 8) continue; // bitfields are not shared with userspace
      const mt = this.resolve(m.type);
      fields.set(m.name, {
        offset: m.bitOffset / 8,
        size: this.sizeOf(m.type),
        length: mt.kind === Kind.Array ? mt.array!.nelems : undefined,
      });
    }
    return { size: t.sizeOrType, fields };
  }

  enumValues(name: string): Map<string, bigint> {
    const t = this.find(name, Kind.Enum) ?? this.find(name, Kind.Enum64);
    if (!t) throw new Error(`enum ${name} is not in the BTF`);
    return t.enumValues!;
  }

  /** Where a global variable sits in a data section such as ".rodata". */
  variable(section: string, name: string): { offset: number; size: number } | undefined {
    const sec = this.find(section, Kind.Datasec);
    for (const info of sec?.secinfo ?? []) {
      if (this.type(info.type).name === name) return { offset: info.offset, size: info.size };
    }
    return undefined;
  }
}
