/**
 * Does any rule that names `binaries[]` cover (host, port)? Only then must the proxy wait for the
 * client's binary identity (~25 ms per new connection) before deciding; otherwise the decision is
 * the same for every binary and identity is looked up in the background for the events.
 *
 * Conservative on purpose: a host pattern we do not understand counts as a match.
 */
import { isAnyProgram } from '../policy/matcher.js';
import type { PolicyDocument } from '../policy/types.js';

interface BinaryRuleHost {
  labels: Array<string | RegExp> | undefined;
  ports: Set<number>;
}

const compiled = new WeakMap<PolicyDocument, BinaryRuleHost[]>();

function compileHost(pattern: string): Array<string | RegExp> | undefined {
  const host = pattern.toLowerCase().replace(/\.$/, '');
  if (host.includes('**')) return undefined;
  return host.split('.').map((label) => {
    if (label === '*') return /^[^.]+$/;
    if (!label.includes('*')) return label;
    return new RegExp(`^${label.split('*').map((t) => t.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^.]*')}$`);
  });
}

function entries(doc: PolicyDocument): BinaryRuleHost[] {
  let list = compiled.get(doc);
  if (list) return list;
  list = [];
  for (const policy of Object.values(doc.network_policies)) {
    // No binaries on an allow policy: no program may use it, whoever asks (no lookup needed);
    // `/**`: every program. Only a list naming particular programs depends on who asks.
    if (policy.binaries.length === 0 || policy.binaries.some((b) => isAnyProgram(b.path))) continue;
    for (const ep of policy.endpoints) list.push({ labels: compileHost(ep.host), ports: new Set(ep.ports) });
  }
  compiled.set(doc, list);
  return list;
}

export function binaryMatters(doc: PolicyDocument, host: string, port: number): boolean {
  const list = entries(doc);
  if (list.length === 0) return false;
  const labels = host.toLowerCase().split('.');
  return list.some((e) => {
    // Port 0 (ANY_PORT): an overlay rule for every port of the host.
    if (e.ports.size > 0 && !e.ports.has(port) && !e.ports.has(0)) return false;
    if (!e.labels) return true;
    if (e.labels.length !== labels.length) return false;
    return e.labels.every((p, i) => (typeof p === 'string' ? p === labels[i] : p.test(labels[i] as string)));
  });
}
