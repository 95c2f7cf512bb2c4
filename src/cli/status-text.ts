/**
 * `status` for humans: one line per subject, each service rendered from its status() object
 * (shapes of src/egress, src/inference, src/sandbox, src/meters, src/agent). Every field is read
 * defensively, so a service that reports something new or odd still prints; services this file
 * does not know get a generic `key=value` line.
 */
import type { SupervisorStatus } from '../control/index.js';
import { humanDuration, nameFlag } from './util.js';

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}
function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${count(n)} ${n === 1 ? one : many}`;
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`;
}

function usd(n: number): string {
  return `$${n.toFixed(2)}`;
}

function shortDigest(d: string): string {
  const [algo, hex] = d.includes(':') ? d.split(':') : ['sha256', d];
  return `${algo}:${(hex ?? '').slice(0, 12)}`;
}

/** `k=v k2.sub=v` for anything (unknown services, unknown fields), at most `max` characters. */
export function genericFields(value: unknown, max = 160): string {
  const parts: string[] = [];
  const walk = (v: unknown, prefix: string): void => {
    const o = obj(v);
    if (o) {
      for (const [k, x] of Object.entries(o)) walk(x, prefix ? `${prefix}.${k}` : k);
      return;
    }
    if (v === null || v === undefined) return;
    if (Array.isArray(v)) {
      if (v.length === 0) return;
      const simple = v.every((x) => typeof x !== 'object' || x === null);
      parts.push(`${prefix}=${simple ? v.join(',') : `[${v.length}]`}`);
      return;
    }
    const s = String(v);
    parts.push(`${prefix}=${/[\s"]/.test(s) ? JSON.stringify(s) : s}`);
  };
  walk(value, '');
  const line = parts.join(' ');
  return line.length > max ? `${line.slice(0, max - 1)}…` : line || '(nothing reported)';
}

/** Lines for one service: the first goes after the padded name, the rest are continuation lines. */
type ServiceRenderer = (s: Obj) => string[];

function egressLines(s: Obj): string[] {
  if (s.listening === false) return ['not listening'];
  const pending = num(s.pending) ?? 0;
  const waiting = num(s.held_waiting) ?? 0;
  const c = obj(s.counters) ?? {};
  const head =
    pending > 0
      ? `${plural(pending, 'request')} HELD for approval${waiting > pending ? ` (${waiting} connections waiting)` : ''}: nemoclaw-tui pending`
      : 'no requests held for approval';
  const lines = [head];
  const requests = num(c.requests);
  if (requests !== undefined) {
    const parts = [`${count(num(c.allowed) ?? 0)} allowed`, `${count(num(c.denied) ?? 0)} denied`, `${count(num(c.held) ?? 0)} held`, `${count(num(c.approved) ?? 0)} approved`];
    const ssrf = num(c.ssrf_denied) ?? 0;
    if (ssrf > 0) parts.push(`${count(ssrf)} refused as internal addresses`);
    lines.push(`${plural(requests, 'request')} so far: ${parts.join(', ')}; ${count(num(c.open_connections) ?? 0)} open connections`);
  }
  return lines;
}

function budgetWindow(label: string, w: Obj | undefined): string | undefined {
  if (!w) return undefined;
  const caps = obj(w.caps) ?? {};
  const used = obj(w.used) ?? {};
  const capTokens = num(caps.tokens);
  const capUsd = num(caps.usd);
  const usedTokens = num(used.tokens) ?? 0;
  const usedUsd = num(used.usd) ?? 0;
  if (capTokens === undefined && capUsd === undefined) {
    return usedTokens > 0 || usedUsd > 0 ? `${label} ${count(usedTokens)} tokens, ${usd(usedUsd)} (no cap)` : undefined;
  }
  const parts: string[] = [];
  parts.push(capTokens !== undefined ? `${count(usedTokens)} of ${count(capTokens)} tokens` : `${count(usedTokens)} tokens`);
  parts.push(capUsd !== undefined ? `${usd(usedUsd)} of ${usd(capUsd)}` : usd(usedUsd));
  const over = (capTokens !== undefined && usedTokens >= capTokens) || (capUsd !== undefined && usedUsd >= capUsd);
  const resets = str(w.resets_at);
  return `${label} ${parts.join(', ')}${over ? ' EXHAUSTED' : ''}${resets ? ` (resets ${resets})` : ''}`;
}

function inferenceLines(s: Obj): string[] {
  if (s.running === false) return ['not running'];
  const providers = Object.entries(obj(s.providers) ?? {}).map(([name, p]) => {
    const po = obj(p) ?? {};
    const model = str(po.model);
    return `${name} (${[str(po.locality), str(po.type), model].filter(Boolean).join(', ')})`;
  });
  const routes = num(s.routes);
  const lines = [
    `${providers.length > 0 ? `providers ${providers.join(', ')}` : 'no providers'}${routes !== undefined ? `; ${plural(routes, 'route')}` : ''}; ${count(num(s.calls) ?? 0)} calls, ${count(num(s.inFlight) ?? num(s.in_flight) ?? 0)} in flight`,
  ];
  const policyError = str(s.policy_error);
  if (policyError) lines.push(`POLICY ERROR: ${policyError}`);
  return lines;
}

function budgetLines(inference: Obj | undefined, meters: Obj | undefined): string[] {
  const b = obj(inference?.budget);
  const parts: string[] = [];
  if (b) {
    for (const label of ['request', 'hour', 'day'] as const) {
      const w = budgetWindow(label, obj(b[label]));
      if (w) parts.push(w);
    }
  }
  const tpm = num(obj(meters?.budget)?.tokens_per_min);
  if (tpm !== undefined) parts.push(`${count(Math.round(tpm))} tokens/min`);
  if (parts.length === 0) return b ? ['no caps set, nothing used'] : [];
  return parts;
}

function sandboxLines(s: Obj): string[] {
  const instances = arr(s.instances).map(obj).filter((x): x is Obj => x !== undefined);
  const head = [str(s.driver), str(s.cgroups) ? `cgroups ${String(s.cgroups)}` : undefined].filter(Boolean).join(', ');
  const lines = [`${head ? `${head}; ` : ''}${instances.length === 0 ? 'no sandboxed processes' : plural(instances.length, 'instance')}`];
  // Whether clients that ignore the proxy variables are seen too (transparent interception).
  if (str(s.network)) lines.push(`network: ${String(s.network)}${str(s.network_reason) ? ` (${String(s.network_reason)})` : ''}`);
  for (const i of instances) {
    const pids = Array.isArray(i.pids) ? i.pids.length : num(i.pids);
    const command = Array.isArray(i.command) ? i.command.join(' ') : str(i.command);
    const who = str(i.user) ?? (num(i.uid) !== undefined ? `uid ${String(i.uid)}` : undefined);
    const bits = [
      `pid ${num(i.pid) ?? '?'}`,
      pids !== undefined ? plural(pids, 'process', 'processes') : undefined,
      str(i.net_mode) ? `network ${String(i.net_mode)}` : undefined,
      who ? `as ${who}` : undefined,
    ].filter(Boolean);
    lines.push(`${str(i.id) ?? '?'}: ${bits.join(', ')}${command ? `: ${command.length > 80 ? `${command.slice(0, 79)}…` : command}` : ''}`);
    if (str(i.landlock_summary)) lines.push(`  ${String(i.landlock_summary)}; violations from ${str(i.violation_source) ?? '?'}`);
  }
  const disk = obj(s.workdir_disk);
  if (disk) {
    const gib = (n: number | undefined): string => (n === undefined ? '?' : `${(n / 1024 ** 3).toFixed(n < 1024 ** 3 ? 2 : 1)} GiB`);
    lines.push(
      str(disk.mode) === 'loop'
        ? `workdir ${gib(num(disk.used_bytes))} of ${gib(num(disk.limit_bytes))} used (limit enforced: loop-mounted image)`
        : `workdir unlimited (${str(disk.reason) ?? 'no limit'})${num(disk.avail_bytes) !== undefined ? `, ${gib(num(disk.avail_bytes))} free on the host filesystem` : ''}`,
    );
  }
  const exited = arr(s.recently_exited).length;
  if (exited > 0) lines.push(`${plural(exited, 'instance')} exited recently`);
  return lines;
}

function gpuLine(gpu: Obj | undefined): string[] {
  if (!gpu) return [];
  const state = str(gpu.state) ?? '?';
  const gpus = arr(obj(gpu.latest)?.gpus).map(obj).filter((x): x is Obj => x !== undefined);
  if (gpus.length === 0) {
    const why = str(gpu.message) ?? str(gpu.reason) ?? state;
    return [`GPU: ${why}${str(gpu.note) ? ` (${String(gpu.note)})` : ''}`];
  }
  const out = gpus.map((g) => {
    const util = num(g.util_gpu_pct);
    const used = num(g.mem_used_mib);
    const total = num(g.mem_total_mib);
    const mem = used !== undefined ? `${count(used)}${total !== undefined ? ` of ${count(total)}` : ''} MiB ${g.mem_source === 'system' ? 'system memory (unified)' : 'VRAM'}` : 'memory n/a';
    const sandboxMem = num(g.sandbox_mem_mib);
    const bits = [
      util !== undefined ? `${util}% busy` : 'utilisation n/a',
      mem,
      sandboxMem !== undefined ? `sandbox ${count(sandboxMem)} MiB` : undefined,
      num(g.temp_c) !== undefined ? `${String(g.temp_c)}°C` : undefined,
      num(g.power_w) !== undefined ? `${String(g.power_w)} W` : undefined,
    ].filter(Boolean);
    return `GPU ${num(g.index) ?? '?'} ${str(g.name) ?? ''}: ${bits.join(', ')}`.replace(/ {2,}/g, ' ');
  });
  if (state !== 'running') out[0] = `${out[0]} [meter ${state}]`;
  if (str(gpu.note)) out.push(`note: ${String(gpu.note)}`);
  return out;
}

function metersLines(s: Obj): string[] {
  const lines: string[] = [];
  const total = obj(obj(s.proc)?.total);
  if (total) {
    lines.push(`sandbox CPU ${(num(total.cpu_pct) ?? 0).toFixed(1)}% of a core, memory ${humanBytes(num(total.rss_bytes) ?? 0)}, ${plural(num(total.pids) ?? 0, 'process', 'processes')}`);
  } else {
    lines.push('sandbox CPU/memory: no sample yet');
  }
  lines.push(...gpuLine(obj(s.gpu)));
  for (const w of arr(s.warnings)) if (typeof w === 'string') lines.push(`warning: ${w}`);
  return lines;
}

function agentLines(s: Obj): string[] {
  const state = str(s.state) ?? '?';
  if (state === 'none') return ['none (a plain sandbox: `run` / `exec` only)'];
  const bits = [
    num(s.pid) !== undefined ? `pid ${String(s.pid)}` : undefined,
    num(s.restarts) ? plural(num(s.restarts)!, 'restart') : undefined,
    str(s.profile) ? `profile ${String(s.profile)}` : undefined,
    num(s.next_restart_in_ms) !== undefined ? `next restart in ${Math.ceil(num(s.next_restart_in_ms)! / 1000)}s` : undefined,
  ].filter(Boolean);
  const lines = [`${[str(s.blueprint), str(s.version)].filter(Boolean).join(' ')} ${state}${bits.length ? ` (${bits.join(', ')})` : ''}`.trim()];
  if (str(s.error)) lines.push(`error: ${String(s.error)}`);
  return lines;
}

const RENDERERS: Record<string, ServiceRenderer> = {
  egress: egressLines,
  inference: inferenceLines,
  sandbox: sandboxLines,
  meters: metersLines,
  agent: agentLines,
};

const LABEL_WIDTH = 11;

function section(label: string, lines: string[]): string[] {
  if (lines.length === 0) return [];
  const pad = ' '.repeat(LABEL_WIDTH + 3);
  return [`  ${label.padEnd(LABEL_WIDTH)} ${lines[0]}`, ...lines.slice(1).map((l) => `${pad}${l}`)];
}

/** The text `status` prints for a running supervisor. */
export function describeStatus(s: SupervisorStatus, opts: { daemonLog?: string } = {}): string[] {
  const services = s.services ?? {};
  const out: string[] = [`sandbox "${s.name}": ${s.state ?? 'running'} (pid ${s.pid}, up ${humanDuration(s.uptime_ms ?? 0)}, nemoclaw-tui ${s.version ?? '?'})`];
  // Loud, right under the first line: this mode must never go unnoticed outside tests.
  if (s.unsafe_allow_loopback_upstreams) {
    out.push('  !! UNSAFE: --unsafe-allow-loopback-upstreams is on: the egress proxy may dial loopback upstreams (tests only)');
  }
  // Louder still: a supervisor that cannot write its audit log lets nothing through (fail closed).
  if (s.audit?.state === 'failing') {
    out.push(`  !! AUDIT LOG FAILING since ${s.audit.since ?? '?'}: ${s.audit.problem ?? s.audit.code ?? 'write failed'}`);
    out.push(`  !! free space on ${s.audit.disk ?? 'the disk of the audit log'}; ${plural(s.audit.lost_records ?? 0, 'event')} not recorded so far (from seq ${s.audit.first_lost_seq ?? '?'}); it resumes with a gap marker`);
  }
  // The kill switch: as loud as a failing audit log (nothing gets out either way).
  const q = obj(services.quarantine);
  if (q?.quarantined === true) {
    out.push(`  !! QUARANTINED since ${String(q.since ?? '?')} (${String(q.reason ?? 'no reason given')}): agent stopped, all egress and inference refused`);
    out.push(`  !! lift it with \`nemoclaw-tui quarantine release${nameFlag(s.name)}\` (the workdir is kept as evidence)`);
  }
  const pending = num(obj(services.egress)?.pending) ?? 0;
  if (pending > 0) out.push(`  !! ${plural(pending, 'request')} waiting for approval: nemoclaw-tui pending${nameFlag(s.name)}`);
  const p = s.policy;
  out.push(...section('policy', [p ? `revision ${p.revision} (sha256 ${p.sha256.slice(0, 12)}, by ${p.author} at ${p.time})` : 'unknown']));
  if (p && (p.presets !== undefined || p.preset_files !== undefined)) {
    const files = (p.preset_files ?? []).map((f) => `${f.name} (file ${f.source}: ${f.policies.join(', ')})`);
    const all = [...(p.presets ?? []), ...files];
    out.push(...section('presets', [all.length > 0 ? all.join(', ') : 'none']));
  }
  if (s.blueprint) {
    const b = s.blueprint;
    out.push(...section('blueprint', [`${b.name} ${b.version} ${shortDigest(b.digest)} (${b.signer === 'unsigned' ? 'unsigned' : `signed by ${b.signer}`})`, `full digest ${b.digest}`, `runs from ${b.dir}`]));
  }
  out.push(...section('events', [`last seq ${s.last_seq}${s.audit ? `, audit log ${s.audit.dir}` : ''}`]));
  out.push(...section('operators', [`${s.operators} attached`]));
  out.push(...section('socket', [s.socket]));
  const order = ['agent', 'sandbox', 'egress', 'inference', 'meters'];
  const names = [...order.filter((n) => n in services), ...Object.keys(services).filter((n) => !order.includes(n))];
  for (const name of names) {
    const st = obj(services[name]) ?? {};
    let lines: string[];
    if (typeof st.error === 'string' && Object.keys(st).length === 1) {
      lines = [`status failed: ${st.error}`];
    } else {
      const render = RENDERERS[name];
      try {
        lines = render ? render(st) : [genericFields(st)];
      } catch {
        lines = [genericFields(st)];
      }
    }
    out.push(...section(name, lines));
    if (name === 'inference') out.push(...section('budget', budgetLines(st, obj(services.meters))));
  }
  if (opts.daemonLog) out.push(...section('log', [opts.daemonLog]));
  return out;
}
