// SPDX-License-Identifier: Apache-2.0
// An OTLP/HTTP sink for bench/spans.sh: takes every POST /v1/traces, reads
// the body and answers 200, as a collector that keeps up would. Prints
// "ready PORT" once listening on 127.0.0.1, and at exit "requests=N bytes=B".
'use strict';
const http = require('node:http');

let requests = 0;
let bytes = 0;
const server = http.createServer((req, res) => {
  req.on('data', (d) => (bytes += d.length));
  req.on('error', () => {});
  req.on('end', () => {
    requests++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
});
server.listen(0, '127.0.0.1', () => console.log(`ready ${server.address().port}`));
process.on('SIGTERM', () => {
  console.log(`requests=${requests} bytes=${bytes}`);
  process.exit(0);
});
