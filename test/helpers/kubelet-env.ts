// SPDX-License-Identifier: Apache-2.0
// The environment the kubelet gives a container, for starting the exporter
// as a pod would be started. No kubelet runs here, so this re-implements two
// of its documented rules (a last resort, named as such):
// - service links: for every Service of the pod's namespace with a cluster
//   IP (only when enableServiceLinks, on unless the pod turns it off), and
//   the API server's "kubernetes" Service (always), NAME_SERVICE_HOST, NAME_SERVICE_PORT,
//   NAME_SERVICE_PORT_<PORT NAME> and the Docker-link style NAME_PORT,
//   NAME_PORT_<PORT>_<PROTO>{,_PROTO,_PORT,_ADDR} (NAME: the Service's name in
//   capitals, dashes as underscores); kubernetes.io/docs/concepts/services-networking/service/#environment-variables
//   and the kubelet's pkg/kubelet/envvars;
// - the container's env list, $(VAR) references expanded from the variables
//   before it, valueFrom fieldRef resolved from the pod.
import type { Obj } from './chart-check';

const envName = (name: string) => name.toUpperCase().replace(/-/g, '_');

/** The API server's Service, default/kubernetes: its links are in every pod. */
const API_SERVICE = { metadata: { name: 'kubernetes' }, spec: { clusterIP: '10.96.0.1', ports: [{ name: 'https', port: 443, protocol: 'TCP' }] } };

/** The service-link variables of these Services, each given a cluster IP in
 * order from 10.96.0.10 (as the API server would allocate them). */
export function serviceLinks(services: readonly Obj[]): Record<string, string> {
  const env: Record<string, string> = {};
  services.forEach((svc, i) => {
    const spec = svc.spec ?? {};
    if (spec.clusterIP === 'None' || spec.type === 'ExternalName') return; // headless: no links
    const withIp = { ...svc, spec: { ...spec, clusterIP: spec.clusterIP ?? `10.96.0.${10 + i}` } };
    Object.assign(env, linksOf(withIp));
  });
  return { ...linksOf(API_SERVICE), ...env };
}

function linksOf(svc: Obj): Record<string, string> {
  const name = envName(svc.metadata.name);
  const ip: string = svc.spec.clusterIP;
  const ports: { name?: string; port: number; protocol?: string }[] = svc.spec.ports ?? [];
  const env: Record<string, string> = {};
  if (!ports.length) return env;
  env[`${name}_SERVICE_HOST`] = ip;
  env[`${name}_SERVICE_PORT`] = String(ports[0]!.port);
  for (const p of ports) if (p.name) env[`${name}_SERVICE_PORT_${envName(p.name)}`] = String(p.port);
  const host = ip.includes(':') ? `[${ip}]` : ip;
  ports.forEach((p, i) => {
    const proto = (p.protocol ?? 'TCP').toUpperCase();
    const url = `${proto.toLowerCase()}://${host}:${p.port}`;
    const prefix = `${name}_PORT_${p.port}_${proto}`;
    if (i === 0) env[`${name}_PORT`] = url;
    env[prefix] = url;
    env[`${prefix}_PROTO`] = proto.toLowerCase();
    env[`${prefix}_PORT`] = String(p.port);
    env[`${prefix}_ADDR`] = ip;
  });
  return env;
}

/** A pod's downward-API fields, for valueFrom.fieldRef. */
export const POD_FIELDS: Record<string, string> = {
  'spec.nodeName': 'node-1',
  'metadata.name': 'bpfnet-exporter-x7k2p',
  'metadata.namespace': 'monitoring',
  'status.podIP': '10.244.1.7',
  'status.hostIP': '192.0.2.10',
};

/** The container's environment as the kubelet builds it: service links
 * first (those of the pod's namespace unless the pod turns them off; the API
 * server's always), then the env list in order, each value's $(VAR)
 * expanded from what came before ($$ is a literal $). */
export function containerEnv(pod: Obj, container: Obj, services: readonly Obj[]): Record<string, string> {
  const namespace = POD_FIELDS['metadata.namespace'];
  const own = services.filter((s) => s.metadata.namespace === namespace);
  const env: Record<string, string> = pod.enableServiceLinks === false ? linksOf(API_SERVICE) : serviceLinks(own);
  for (const e of container.env ?? []) {
    if (e.valueFrom?.fieldRef) {
      const v = POD_FIELDS[e.valueFrom.fieldRef.fieldPath];
      if (v === undefined) throw new Error(`no value for fieldRef ${e.valueFrom.fieldRef.fieldPath}`);
      env[e.name] = v;
    } else if (e.valueFrom) {
      throw new Error(`valueFrom of ${e.name} is not one a test can give: ${JSON.stringify(e.valueFrom)}`);
    } else {
      env[e.name] = String(e.value ?? '').replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v: string | undefined) => (m === '$$' ? '$' : (env[v!] ?? m)));
    }
  }
  return env;
}
