// SPDX-License-Identifier: Apache-2.0
// Just what the bindings generator needs of a BPF object file (ELF64, little
// endian): its sections by name, and its global functions with the section
// each lives in (a BPF program's section names its attach point).

export interface ElfFile {
  section(name: string): Buffer | undefined;
  /** global functions (BPF programs), in symbol table order, with their section */
  functions(): { name: string; section: string }[];
}

const SHT_SYMTAB = 2;
const STT_FUNC = 2;
const STB_GLOBAL = 1;

export function readElf(bytes: Buffer): ElfFile {
  if (bytes.length < 64 || bytes.readUInt32BE(0) !== 0x7f454c46 || bytes[4] !== 2 || bytes[5] !== 1) {
    throw new Error('not a 64-bit little-endian ELF file');
  }
  const shoff = Number(bytes.readBigUInt64LE(0x28));
  const shentsize = bytes.readUInt16LE(0x3a);
  const shnum = bytes.readUInt16LE(0x3c);
  const shstrndx = bytes.readUInt16LE(0x3e);
  const headers = Array.from({ length: shnum }, (_, i) => {
    const at = shoff + i * shentsize;
    return {
      nameAt: bytes.readUInt32LE(at),
      type: bytes.readUInt32LE(at + 4),
      offset: Number(bytes.readBigUInt64LE(at + 24)),
      size: Number(bytes.readBigUInt64LE(at + 32)),
      link: bytes.readUInt32LE(at + 40),
      entsize: Number(bytes.readBigUInt64LE(at + 56)),
    };
  });
  const data = (i: number) => bytes.subarray(headers[i]!.offset, headers[i]!.offset + headers[i]!.size);
  const str = (table: Buffer, at: number) => table.toString('utf8', at, table.indexOf(0, at));
  const names = headers.map((h) => str(data(shstrndx), h.nameAt));
  return {
    section: (name) => {
      const i = names.indexOf(name);
      return i < 0 ? undefined : data(i);
    },
    functions: () => {
      const i = headers.findIndex((h) => h.type === SHT_SYMTAB);
      if (i < 0) return [];
      const symtab = data(i);
      const strtab = data(headers[i]!.link);
      const out: { name: string; section: string }[] = [];
      for (let at = 0; at + 24 <= symtab.length; at += headers[i]!.entsize || 24) {
        const info = symtab[at + 4]!;
        if ((info & 0xf) !== STT_FUNC || info >> 4 !== STB_GLOBAL) continue;
        out.push({ name: str(strtab, symtab.readUInt32LE(at)), section: names[symtab.readUInt16LE(at + 6)]! });
      }
      return out;
    },
  };
}
