// SPDX-License-Identifier: Apache-2.0
// Struct layouts shared with BPF C. Userspace states the fields it reads and
// their sizes; the offsets come from the object's BTF, and binding fails if the
// C struct no longer matches what userspace expects.
import type { Btf } from './btf';

export type Scalar = 'u8' | 'u16' | 'u32' | 'u64';
export interface StructSpec {
  struct: string;
  fields: Record<string, FieldSpec>;
}
export interface ArraySpec {
  array: Scalar | StructSpec;
  length: number;
}
export type FieldSpec = Scalar | StructSpec | ArraySpec;

const SCALAR_SIZE: Record<Scalar, number> = { u8: 1, u16: 2, u32: 4, u64: 8 };

export class LayoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LayoutError';
  }
}

export class Layout<F extends string = string> {
  constructor(
    readonly name: string,
    readonly size: number,
    private readonly offsets: Map<string, number>,
    private readonly nestedLayouts: Map<string, Layout>,
    private readonly lengths = new Map<string, number>(),
  ) {}

  /** The element count of an array field. */
  length(field: F): number {
    const n = this.lengths.get(field);
    if (n === undefined) throw new LayoutError(`struct ${this.name} field ${field} is not an array`);
    return n;
  }

  offset(field: F): number {
    const off = this.offsets.get(field);
    if (off === undefined) throw new LayoutError(`struct ${this.name} has no bound field ${field}`);
    return off;
  }

  nested(field: F): Layout {
    const l = this.nestedLayouts.get(field);
    if (!l) throw new LayoutError(`struct ${this.name} field ${field} is not a struct`);
    return l;
  }
}

function specSize(btf: Btf, spec: Scalar | StructSpec): number {
  return typeof spec === 'string' ? SCALAR_SIZE[spec] : btf.layout(spec.struct).size;
}

/** Binds spec to the struct of the same name in btf, checking every field. */
export function bindLayout(btf: Btf, spec: StructSpec): Layout {
  const actual = btf.layout(spec.struct);
  const offsets = new Map<string, number>();
  const nested = new Map<string, Layout>();
  for (const [field, fspec] of Object.entries(spec.fields)) {
    const f = actual.fields.get(field);
    if (!f) throw new LayoutError(`struct ${spec.struct} has no field ${field} (rebuild the BPF objects?)`);
    let expected: number;
    if (typeof fspec === 'string') {
      expected = SCALAR_SIZE[fspec];
    } else if ('array' in fspec) {
      if (f.length !== fspec.length) {
        throw new LayoutError(`struct ${spec.struct} field ${field} has ${f.length ?? 'no'} elements, userspace expects ${fspec.length}`);
      }
      expected = specSize(btf, fspec.array) * fspec.length;
      if (typeof fspec.array !== 'string') nested.set(field, bindLayout(btf, fspec.array));
    } else {
      expected = specSize(btf, fspec);
      nested.set(field, bindLayout(btf, fspec));
    }
    if (f.size !== expected) {
      throw new LayoutError(`struct ${spec.struct} field ${field} is ${f.size} bytes, userspace expects ${expected}`);
    }
    offsets.set(field, f.offset);
  }
  return new Layout(spec.struct, actual.size, offsets, nested);
}
