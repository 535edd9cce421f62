// SPDX-License-Identifier: Apache-2.0
// A certificate authority of a test's own and what it signs, made with
// openssl: a server certificate for 127.0.0.1 and a client certificate.
// The files live in a directory removed by the test's cleanup.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onCleanup } from './cleanup';

export interface TestCerts {
  dir: string;
  /** paths of the PEM files */
  caCert: string;
  serverKey: string;
  serverCert: string;
  clientKey: string;
  clientCert: string;
  read(file: string): Buffer;
  /** removes the files (the cleanup does, if the test does not) */
  remove(): Promise<void>;
}

export function makeCerts(label: string): TestCerts {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `bpfnet-${label}-certs-`));
  const remove = onCleanup(`certificates in ${dir}`, async () => fs.rmSync(dir, { recursive: true, force: true }));
  const at = (f: string) => path.join(dir, f);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=bpfnet-test-ca', '-keyout', 'ca.key', '-out', 'ca.pem');
  const sign = (name: string, subject: string, ext: string) => {
    fs.writeFileSync(at(`${name}.ext`), ext + '\n');
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', subject, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.pem`,
    );
  };
  sign('server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth');
  sign('client', '/CN=bpfnet-exporter', 'extendedKeyUsage=clientAuth');
  return {
    dir,
    caCert: at('ca.pem'),
    serverKey: at('server.key'),
    serverCert: at('server.pem'),
    clientKey: at('client.key'),
    clientCert: at('client.pem'),
    read: (file) => fs.readFileSync(file),
    remove,
  };
}
