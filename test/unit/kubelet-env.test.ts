// SPDX-License-Identifier: Apache-2.0
// test/helpers/kubelet-env.ts against the kubelet's documented rule for
// service links (kubernetes.io/docs/concepts/services-networking/service/#environment-variables):
// the pod tests start the exporter with what it computes.
import assert from 'node:assert/strict';
import { containerEnv, serviceLinks } from '../helpers/kubelet-env';

const API = {
  KUBERNETES_SERVICE_HOST: '10.96.0.1',
  KUBERNETES_SERVICE_PORT: '443',
  KUBERNETES_SERVICE_PORT_HTTPS: '443',
  KUBERNETES_PORT: 'tcp://10.96.0.1:443',
  KUBERNETES_PORT_443_TCP: 'tcp://10.96.0.1:443',
  KUBERNETES_PORT_443_TCP_PROTO: 'tcp',
  KUBERNETES_PORT_443_TCP_PORT: '443',
  KUBERNETES_PORT_443_TCP_ADDR: '10.96.0.1',
};

describe('the kubelet environment of a test pod', function () {
  it("gives each Service's host, ports by name and Docker-link variables, names in capitals with underscores", function () {
    const dns = {
      metadata: { name: 'kube-dns', namespace: 'monitoring' },
      spec: {
        clusterIP: '10.96.0.53',
        ports: [
          { port: 53, protocol: 'UDP' },
          { name: 'dns-tcp', port: 53, protocol: 'TCP' },
        ],
      },
    };
    const headless = { metadata: { name: 'headless', namespace: 'monitoring' }, spec: { clusterIP: 'None', ports: [{ port: 80 }] } };
    assert.deepEqual(serviceLinks([dns, headless]), {
      ...API,
      KUBE_DNS_SERVICE_HOST: '10.96.0.53',
      KUBE_DNS_SERVICE_PORT: '53',
      KUBE_DNS_SERVICE_PORT_DNS_TCP: '53',
      KUBE_DNS_PORT: 'udp://10.96.0.53:53',
      KUBE_DNS_PORT_53_UDP: 'udp://10.96.0.53:53',
      KUBE_DNS_PORT_53_UDP_PROTO: 'udp',
      KUBE_DNS_PORT_53_UDP_PORT: '53',
      KUBE_DNS_PORT_53_UDP_ADDR: '10.96.0.53',
      KUBE_DNS_PORT_53_TCP: 'tcp://10.96.0.53:53',
      KUBE_DNS_PORT_53_TCP_PROTO: 'tcp',
      KUBE_DNS_PORT_53_TCP_PORT: '53',
      KUBE_DNS_PORT_53_TCP_ADDR: '10.96.0.53',
    });
  });

  it("takes only the pod's namespace's Services, none with links off but the API server's, then the env list", function () {
    const svc = (name: string, namespace: string) => ({ metadata: { name, namespace }, spec: { ports: [{ name: 'http', port: 80 }] } });
    const c = { env: [{ name: 'URL', value: 'http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)/$$(x)' }] };
    const on = containerEnv({}, c, [svc('other', 'default'), svc('web', 'monitoring')]);
    assert.deepEqual(
      Object.keys(on).filter((k) => !k.startsWith('KUBERNETES_')),
      [
        'WEB_SERVICE_HOST',
        'WEB_SERVICE_PORT',
        'WEB_SERVICE_PORT_HTTP',
        'WEB_PORT',
        'WEB_PORT_80_TCP',
        'WEB_PORT_80_TCP_PROTO',
        'WEB_PORT_80_TCP_PORT',
        'WEB_PORT_80_TCP_ADDR',
        'URL',
      ],
    );
    assert.equal(on.URL, 'http://10.96.0.10:80/$(x)');
    assert.deepEqual(containerEnv({ enableServiceLinks: false }, c, [svc('web', 'monitoring')]), {
      ...API,
      URL: 'http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)/$(x)',
    });
  });
});
