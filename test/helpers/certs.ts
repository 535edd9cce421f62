// SPDX-License-Identifier: Apache-2.0
// Certificate authorities of a test's own and what they sign, made with
// openssl (P-256 keys): NAME.key and NAME.crt in a directory removed by the
// test's cleanup.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onCleanup } from './cleanup';

export class TestPki {
  readonly dir: string;
  /** removes the files (the cleanup does, if the test does not) */
  readonly remove: () => Promise<void>;

  constructor(label: string) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `bpfnet-${label}-certs-`));
    const dir = this.dir;
    this.remove = onCleanup(`certificates in ${dir}`, async () => fs.rmSync(dir, { recursive: true, force: true }));
  }

  at(file: string): string {
    return path.join(this.dir, file);
  }

  read(file: string): Buffer {
    return fs.readFileSync(this.at(file));
  }

  private openssl(...args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: ['ignore', 'ignore', 'pipe'] });
  }

  private newKey(name: string): string[] {
    return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`];
  }

  /** A self-signed CA. */
  ca(name: string): this {
    this.openssl('req', '-x509', ...this.newKey(name), '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`);
    return this;
  }

  /** A certificate signed by the CA `by`, with a subjectAltName and an
   * extendedKeyUsage when given. */
  issue(name: string, o: { by: string; subject?: string; san?: string; usage?: 'serverAuth' | 'clientAuth' }): this {
    this.openssl('req', ...this.newKey(name), '-out', `${name}.csr`, '-subj', o.subject ?? `/CN=${name}`);
    const ext = [o.san && `subjectAltName=${o.san}`, o.usage && `extendedKeyUsage=${o.usage}`].filter(Boolean);
    if (ext.length) fs.writeFileSync(this.at(`${name}.ext`), ext.join('\n') + '\n');
    this.openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${o.by}.crt`,
      '-CAkey',
      `${o.by}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      ...(ext.length ? ['-extfile', `${name}.ext`] : []),
    );
    return this;
  }
}

export interface TestCerts {
  dir: string;
  /** paths of the PEM files */
  caCert: string;
  serverKey: string;
  serverCert: string;
  clientKey: string;
  clientCert: string;
  read(file: string): Buffer;
  remove(): Promise<void>;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate. */
export function makeCerts(label: string): TestCerts {
  const pki = new TestPki(label)
    .ca('ca')
    .issue('server', { by: 'ca', subject: '/CN=127.0.0.1', san: 'IP:127.0.0.1', usage: 'serverAuth' })
    .issue('client', { by: 'ca', subject: '/CN=bpfnet-exporter', usage: 'clientAuth' });
  return {
    dir: pki.dir,
    caCert: pki.at('ca.crt'),
    serverKey: pki.at('server.key'),
    serverCert: pki.at('server.crt'),
    clientKey: pki.at('client.key'),
    clientCert: pki.at('client.crt'),
    read: (file) => fs.readFileSync(file),
    remove: pki.remove,
  };
}
