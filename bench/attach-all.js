// SPDX-License-Identifier: Apache-2.0
// Loads a BPF object and attaches every program in it, through the
// exporter's own libbpf binding, until SIGTERM: for benchmarks that measure
// programs other than the exporter's (bench/netstack-floor.bpf.c).
// Prints "attached N" once attached.
//   node bench/attach-all.js OBJECT.bpf.o
'use strict';
const path = require('node:path');
const { BpfObject } = require(path.resolve(__dirname, '..', 'build', 'js', 'src', 'libbpf'));

const obj = BpfObject.open(process.argv[2]);
obj.load();
const links = obj.programs().map((p) => p.attach());
console.log(`attached ${links.length}`);
process.on('SIGTERM', () => {
  for (const l of links) l.destroy();
  obj.close();
  process.exit(0);
});
setInterval(() => {}, 1 << 30);
