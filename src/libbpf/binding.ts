// SPDX-License-Identifier: Apache-2.0
// What the generated bindings (src/generated/*.ts, written at build time by
// scripts/gen-bindings.ts from each object's BTF and symbols) say about a
// BPF object: its maps, programs, settings, globals, the structs userspace
// reads and the enums whose values are label values. Code that names a map,
// a program, a field or a label the C no longer has does not compile.
import type { Btf } from './btf';
import { Layout, LayoutError } from './layout';

/** A scalar as the C declares it; "char" arrays are strings. */
export type ScalarType = 'u8' | 'u16' | 'u32' | 'u64' | 's8' | 's16' | 's32' | 's64' | 'char' | 'bool';

export interface FieldBinding {
  offset: number;
  size: number;
  /** a scalar, or the name of a struct of the same binding */
  type: string;
  /** element count, for an array */
  length?: number;
}

export interface StructBinding {
  size: number;
  fields: Readonly<Record<string, FieldBinding>>;
}

export interface MapBinding {
  /** BPF_MAP_TYPE_* without its prefix, lower case: "percpu_array" */
  type: string;
  /** as the C declares it; the loader may change it before load */
  maxEntries: number;
  /** a scalar or a struct name, when the C gives the type */
  key?: string;
  value?: string;
}

export interface EnumBinding {
  /** the values' names without their common prefix, lower case, in C order,
   * without a last *_COUNT or *_MAX */
  labels: readonly string[];
  /** every name as the C has it, with its value */
  values: Readonly<Record<string, number>>;
}

export interface ObjectBinding {
  /** the object's file stem: build/bpf/<file>.bpf.o */
  file: string;
  maps: Readonly<Record<string, MapBinding>>;
  /** each program with its ELF section (its attach point) */
  programs: Readonly<Record<string, { section: string }>>;
  /** const volatile globals (.rodata), set before load */
  settings: Readonly<Record<string, ScalarType>>;
  /** other globals, by the section they live in */
  globals: Readonly<Record<string, '.bss' | '.data'>>;
  structs: Readonly<Record<string, StructBinding>>;
  enums: Readonly<Record<string, EnumBinding>>;
}

export type MapName<B extends ObjectBinding> = Extract<keyof B['maps'], string>;
export type ProgramName<B extends ObjectBinding> = Extract<keyof B['programs'], string>;
export type SettingName<B extends ObjectBinding> = Extract<keyof B['settings'], string>;
export type GlobalName<B extends ObjectBinding> = Extract<keyof B['globals'], string>;
export type StructName<B extends ObjectBinding> = Extract<keyof B['structs'], string>;
export type FieldName<B extends ObjectBinding, S extends StructName<B>> = Extract<keyof B['structs'][S]['fields'], string>;
/** The struct a map's values are, by the binding. */
export type ValueStruct<B extends ObjectBinding, M extends MapName<B>> = B['maps'][M] extends { value: infer V } ? Extract<V, StructName<B>> : never;
/** The label values of a C enum, as a union of string literals. */
export type LabelOf<E extends EnumBinding> = E['labels'][number];

/** The layout of struct name, from the generated binding (nested structs too). */
export function structLayout<B extends ObjectBinding, S extends StructName<B>>(binding: B, name: S): Layout<FieldName<B, S>> {
  const s = binding.structs[name] as StructBinding | undefined;
  if (!s) throw new LayoutError(`${binding.file}: no struct ${name} in the generated binding`);
  const offsets = new Map<string, number>();
  const nested = new Map<string, Layout>();
  const lengths = new Map<string, number>();
  for (const [field, f] of Object.entries(s.fields)) {
    offsets.set(field, f.offset);
    if (f.length !== undefined) lengths.set(field, f.length);
    if (f.type in binding.structs) nested.set(field, structLayout(binding, f.type as StructName<B>));
  }
  return new Layout<FieldName<B, S>>(name, s.size, offsets, nested, lengths);
}

/** Checks that the object on disk has the layouts the binding was generated
 * from: a mismatch means build/js and build/bpf come from different builds. */
export function checkBinding(binding: ObjectBinding, btf: Btf, path: string): void {
  for (const [name, s] of Object.entries(binding.structs)) {
    let actual: ReturnType<Btf['layout']>;
    try {
      actual = btf.layout(name);
    } catch {
      throw new LayoutError(`${path} has no struct ${name}, which the exporter was built against: rebuild both (npm run build)`);
    }
    const same =
      actual.size === s.size && Object.entries(s.fields).every(([f, b]) => actual.fields.get(f)?.offset === b.offset && actual.fields.get(f)?.size === b.size);
    if (!same) throw new LayoutError(`${path}: struct ${name} differs from the one the exporter was built against: rebuild both (npm run build)`);
  }
}
