// SPDX-License-Identifier: Apache-2.0
// Writes src/generated/<name>.ts for each build/bpf/<name>.bpf.o: the typed
// binding of that object (src/libbpf/binding.ts), read from its BTF and its
// symbol table, the way bpftool's skeletons and bpf2go do it. Structs and
// enums come from the maps' key and value types and from the object's
// BPFNET_EXPORT list (bpf/include/bpfnet.h).
//   node build/gen/scripts/gen-bindings.js build/bpf src/generated
import fs from 'node:fs';
import path from 'node:path';
import { Btf, Kind, type BtfType } from '../src/libbpf/btf';
import type { EnumBinding, FieldBinding, MapBinding, ObjectBinding, ScalarType, StructBinding } from '../src/libbpf/binding';
import { readElf } from '../src/libbpf/elf';

/** enum bpf_map_type values, by name (include/uapi/linux/bpf.h). */
const MAP_TYPES = [
  'unspec', 'hash', 'array', 'prog_array', 'perf_event_array', 'percpu_hash', 'percpu_array', 'stack_trace', 'cgroup_array',
  'lru_hash', 'lru_percpu_hash', 'lpm_trie', 'array_of_maps', 'hash_of_maps', 'devmap', 'sockmap', 'cpumap', 'xskmap', 'sockhash',
  'cgroup_storage', 'reuseport_sockarray', 'percpu_cgroup_storage', 'queue', 'stack', 'sk_storage', 'devmap_hash', 'struct_ops',
  'ringbuf', 'inode_storage', 'task_storage', 'bloom_filter', 'user_ringbuf', 'cgrp_storage', 'arena',
]; // prettier-ignore

const EXPORTS = 'bpfnet_exports';

export function generate(objectPath: string): { binding: ObjectBinding; constName: string } {
  const elf = readElf(fs.readFileSync(objectPath));
  const raw = elf.section('.BTF');
  if (!raw) throw new Error(`${objectPath} has no BTF: compile it with clang -g`);
  const btf = new Btf(raw);
  const file = path.basename(objectPath).replace(/\.bpf\.o$/, '');
  const structs: Record<string, StructBinding> = {};
  const enums: Record<string, EnumBinding> = {};

  const scalar = (t: BtfType): ScalarType | undefined => {
    if (t.kind === Kind.Enum) return (['u8', 'u16', 'u32', 'u64'] as const)[Math.log2(t.sizeOrType)];
    if (t.kind !== Kind.Int) return undefined;
    if (t.intEncoding! & 4) return 'bool';
    if (t.intEncoding! & 2 || (t.name === 'char' && t.intBits === 8)) return 'char';
    return `${t.intEncoding! & 1 ? 's' : 'u'}${t.intBits}` as ScalarType;
  };
  /** The binding's name of a type: a scalar, or a struct (emitted with its own). */
  const typeName = (id: number): string => {
    const t = btf.resolve(id);
    const s = scalar(t);
    if (t.kind === Kind.Enum && t.name) addEnum(t);
    if (s) return s;
    if (t.kind === Kind.Array) return `${typeName(t.array!.type)}[${t.array!.nelems}]`;
    if (t.kind === Kind.Struct && t.name) {
      addStruct(t);
      return t.name;
    }
    throw new Error(`${objectPath}: type ${t.name || `#${t.id}`} (BTF kind ${t.kind}) cannot be shared with userspace`);
  };
  const addStruct = (t: BtfType): void => {
    if (structs[t.name]) return;
    structs[t.name] = { size: t.sizeOrType, fields: {} }; // before members: a struct may name itself through a pointer
    const fields: Record<string, FieldBinding> = {};
    for (const m of t.members!) {
      if (m.bitSize || m.bitOffset % 8 || !m.name) continue; // bitfields and anonymous members are not shared
      const mt = btf.resolve(m.type);
      if (mt.kind === Kind.Ptr) continue;
      const f: FieldBinding = { offset: m.bitOffset / 8, size: btf.sizeOf(m.type), type: '' };
      if (mt.kind === Kind.Array) {
        f.type = typeName(mt.array!.type);
        f.length = mt.array!.nelems;
      } else {
        f.type = typeName(m.type);
      }
      fields[m.name] = f;
    }
    structs[t.name] = { size: t.sizeOrType, fields };
  };
  const addEnum = (t: BtfType): void => {
    if (enums[t.name]) return;
    const names = [...t.enumValues!.keys()];
    const sentinel = names.length > 1 && /_(COUNT|MAX)$/.test(names[names.length - 1]!);
    const labelled = sentinel ? names.slice(0, -1) : names;
    const prefix = commonPrefix(names.length > 1 ? names : labelled);
    enums[t.name] = {
      labels: labelled.map((n) => n.slice(prefix.length).toLowerCase()),
      values: Object.fromEntries([...t.enumValues!].map(([n, v]) => [n, Number(v)])),
    };
  };

  const maps: Record<string, MapBinding> = {};
  const settings: Record<string, ScalarType> = {};
  const globals: Record<string, '.bss' | '.data'> = {};
  for (let id = 1; id <= btf.count; id++) {
    const sec = btf.type(id);
    if (sec.kind !== Kind.Datasec) continue;
    for (const v of sec.secinfo!) {
      const variable = btf.type(v.type);
      if (variable.kind !== Kind.Var || variable.linkage !== 1) continue;
      if (sec.name === '.maps') {
        maps[variable.name] = mapBinding(btf, btf.resolve(variable.sizeOrType), typeName);
      } else if (variable.name === EXPORTS) {
        const list = btf.resolve(btf.resolve(variable.sizeOrType).sizeOrType); // const pointer -> struct
        for (const m of list.members!) typeName(btf.resolve(m.type).kind === Kind.Array ? btf.resolve(m.type).array!.type : m.type);
      } else if (sec.name === '.rodata') {
        const s = scalar(btf.resolve(variable.sizeOrType));
        if (s) settings[variable.name] = s;
      } else if (sec.name === '.bss' || sec.name === '.data') {
        globals[variable.name] = sec.name;
      }
    }
  }
  const programs = Object.fromEntries(elf.functions().map((f) => [f.name, { section: f.section }]));
  return { binding: { file, maps, programs, settings, globals, structs, enums }, constName: file.toUpperCase().replace(/[^A-Z0-9]+/g, '_') };
}

/** A map definition of the .maps section: __uint(type, ...), __type(key, ...), ... */
function mapBinding(btf: Btf, def: BtfType, typeName: (id: number) => string): MapBinding {
  const out: MapBinding = { type: '', maxEntries: 0 };
  for (const m of def.members!) {
    const target = btf.resolve(btf.resolve(m.type).sizeOrType); // every member is a pointer
    const n = target.kind === Kind.Array ? target.array!.nelems : 0; // __uint(name, n): int (*name)[n]
    if (m.name === 'type') out.type = MAP_TYPES[n] ?? `type_${n}`;
    else if (m.name === 'max_entries') out.maxEntries = n;
    else if (m.name === 'key') out.key = typeName(btf.resolve(m.type).sizeOrType);
    else if (m.name === 'value') out.value = typeName(btf.resolve(m.type).sizeOrType);
  }
  return out;
}

function commonPrefix(names: string[]): string {
  let p = names[0] ?? '';
  for (const n of names) while (!n.startsWith(p)) p = p.slice(0, -1);
  return p.slice(0, p.lastIndexOf('_') + 1);
}

export function render(objectPath: string, binding: ObjectBinding, constName: string): string {
  return `// Generated by scripts/gen-bindings.ts from ${objectPath}: do not edit.
// The C side is bpf/${binding.file}.bpf.c and the headers it includes.
import type { ObjectBinding } from '../libbpf/binding';

export const ${constName} = ${JSON.stringify(binding, null, 2)} as const satisfies ObjectBinding;
`;
}

if (require.main === module) {
  const [from, to] = process.argv.slice(2);
  if (!from || !to) {
    console.error('usage: gen-bindings OBJECT_DIR OUT_DIR');
    process.exit(2);
  }
  fs.mkdirSync(to, { recursive: true });
  const objects = fs.readdirSync(from).filter((f) => f.endsWith('.bpf.o'));
  // the binding of an object that is gone goes too
  for (const old of fs.readdirSync(to).filter((f) => f.endsWith('.ts') && !objects.includes(f.replace(/\.ts$/, '.bpf.o')))) fs.rmSync(path.join(to, old));
  for (const name of objects) {
    const objectPath = path.join(from, name);
    const { binding, constName } = generate(objectPath);
    const out = path.join(to, name.replace(/\.bpf\.o$/, '.ts'));
    const text = render(objectPath, binding, constName);
    if (!fs.existsSync(out) || fs.readFileSync(out, 'utf8') !== text) fs.writeFileSync(out, text);
  }
}
