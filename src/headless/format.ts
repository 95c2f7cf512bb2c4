/**
 * One line per event for humans and journald:
 *   2026-11-22T10:00:00.123Z net.decision DENY node -> evil.example:443 rule=- reason="…"
 * A per-kind formatter writes the head; every field it did not use follows as key=value, so a new
 * field (or a kind without a formatter) is never hidden.
 */
import type { AuditEvent, EventLevel } from '../audit/events.js';

export interface FormatOptions {
  /** ANSI colours (only on a TTY, never with NO_COLOR). */
  color: boolean;
  /** journald: prefix `<N>` syslog priority, drop our timestamp (the journal adds its own). */
  journal: boolean;
}

/** Fields every event has; never repeated as key=value. */
const ENVELOPE = new Set(['ts', 'seq', 'kind', 'level', 'sandbox', 'id', 'ocsf_class', 'prev_hash', 'hash', 'transient']);

const MAX_VALUE_CHARS = 300;

export const SYSLOG_PRIORITY: Record<EventLevel, number> = { error: 3, warn: 4, notice: 5, info: 6, debug: 7 };

const ANSI = {
  reset: '\x1b[0m',
  dim: '\x1b[2m',
  bold: '\x1b[1m',
  red: '\x1b[31m',
  green: '\x1b[32m',
  yellow: '\x1b[33m',
  cyan: '\x1b[36m',
  magenta: '\x1b[35m',
};

type Paint = (code: keyof typeof ANSI, text: string) => string;

interface Head {
  text: string;
  used: string[];
}

function str(v: unknown): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  return typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
}

/** First present field among aliases. */
function pick(e: AuditEvent, used: string[], ...names: string[]): string | undefined {
  for (const n of names) {
    const v = str(e[n]);
    if (v !== undefined) {
      used.push(n);
      return v;
    }
  }
  return undefined;
}

function base(path: string | undefined): string | undefined {
  if (!path) return undefined;
  const i = path.lastIndexOf('/');
  return i >= 0 && i < path.length - 1 ? path.slice(i + 1) : path;
}

function verdictColor(v: string): keyof typeof ANSI {
  const u = v.toUpperCase();
  if (u === 'DENY' || u === 'DENIED' || u === 'BLOCK' || u === 'BLOCKED' || u === 'EXCEEDED') return 'red';
  if (u === 'ALLOW' || u === 'ALLOWED' || u === 'APPROVE' || u === 'APPROVED') return 'green';
  return 'yellow';
}

function target(e: AuditEvent, used: string[]): string {
  const host = pick(e, used, 'host', 'dest_host') ?? '?';
  const port = pick(e, used, 'port', 'dest_port');
  return port ? `${host}:${port}` : host;
}

function binaryName(e: AuditEvent, used: string[]): string {
  return base(pick(e, used, 'binary', 'exe', 'process')) ?? '-';
}

const HEADS: Partial<Record<string, (e: AuditEvent, paint: Paint) => Head>> = {
  'net.decision': (e, paint) => {
    const used: string[] = [];
    const verdict = (pick(e, used, 'verdict', 'decision', 'action') ?? '?').toUpperCase();
    const bin = binaryName(e, used);
    const to = target(e, used);
    const method = pick(e, used, 'method');
    const path = pick(e, used, 'path');
    const rule = pick(e, used, 'rule') ?? '-';
    if (!used.includes('rule')) used.push('rule');
    const l7 = method || path ? ` ${method ?? ''}${method && path ? ' ' : ''}${path ?? ''}` : '';
    return { text: `${paint(verdictColor(verdict), verdict)} ${bin} -> ${to}${l7} rule=${rule}`, used };
  },
  'net.request': (e) => {
    const used: string[] = [];
    const bin = binaryName(e, used);
    const to = target(e, used);
    const method = pick(e, used, 'method');
    const path = pick(e, used, 'path');
    return { text: `${bin} -> ${to}${method ? ` ${method}` : ''}${path ? ` ${path}` : ''}`, used };
  },
  'net.held': (e, paint) => {
    const used: string[] = [];
    const bin = binaryName(e, used);
    const to = target(e, used);
    return { text: `${paint('yellow', 'HELD')} ${bin} -> ${to} (awaiting approval)`, used };
  },
  'net.dns': (e, paint) => {
    const used: string[] = [];
    const name = pick(e, used, 'name') ?? '?';
    const qtype = pick(e, used, 'qtype') ?? '?';
    const rcode = pick(e, used, 'rcode') ?? '?';
    const answer = pick(e, used, 'answer');
    return { text: `${paint('cyan', 'DNS')} ${qtype} ${name} -> ${answer ?? (rcode === 'NOERROR' ? 'no records' : rcode)}`, used: [...used, 'rcode'] };
  },
  'approval.decision': (e, paint) => {
    const used: string[] = [];
    const verdict = (pick(e, used, 'decision', 'verdict', 'action') ?? '?').toUpperCase();
    const to = target(e, used);
    const scope = pick(e, used, 'scope');
    const by = pick(e, used, 'by', 'author', 'operator');
    return { text: `${paint(verdictColor(verdict), verdict)} ${to}${scope ? ` scope=${scope}` : ''}${by ? ` by=${by}` : ''}`, used };
  },
  'fs.violation': (e, paint) => {
    const used: string[] = [];
    const op = pick(e, used, 'op', 'operation', 'syscall') ?? 'access';
    const path = pick(e, used, 'path') ?? '?';
    const bin = binaryName(e, used);
    return { text: `${paint('red', 'DENIED')} ${bin} ${op} ${path}`, used };
  },
  'policy.revision': (e) => {
    const used: string[] = [];
    const rev = pick(e, used, 'revision', 'number') ?? '?';
    const sha = pick(e, used, 'sha256');
    const author = pick(e, used, 'author');
    used.push('diff');
    return { text: `revision ${rev}${sha ? ` sha256=${sha.slice(0, 12)}` : ''}${author ? ` by ${author}` : ''}`, used };
  },
  'sandbox.lifecycle': (e) => {
    const used: string[] = [];
    const action = pick(e, used, 'action', 'state', 'phase') ?? '?';
    return { text: action, used };
  },
  'agent.log': (e) => {
    const used: string[] = [];
    const stream = pick(e, used, 'stream');
    const line = pick(e, used, 'line', 'message', 'text') ?? '';
    return { text: `${stream ? `[${stream}] ` : ''}${line}`, used };
  },
  'inference.route': (e) => {
    const used: string[] = [];
    const provider = pick(e, used, 'provider');
    const model = pick(e, used, 'model');
    const route = pick(e, used, 'route');
    return { text: `${provider ?? '?'}${model ? `/${model}` : ''}${route ? ` route=${route}` : ''}`, used };
  },
  'inference.done': (e) => {
    const used: string[] = [];
    const provider = pick(e, used, 'provider');
    const model = pick(e, used, 'model');
    return { text: `${provider ?? '?'}${model ? `/${model}` : ''}`, used };
  },
  'budget.exceeded': (e, paint) => {
    const used: string[] = [];
    const budget = pick(e, used, 'budget', 'name') ?? '?';
    return { text: `${paint('red', 'EXCEEDED')} ${budget}`, used };
  },
};

function quote(v: string): string {
  const s = v.length > MAX_VALUE_CHARS ? `${v.slice(0, MAX_VALUE_CHARS)}…` : v;
  return /^[\w.:/@+,=-]+$/.test(s) ? s : JSON.stringify(s);
}

function fieldValue(v: unknown): string {
  if (typeof v === 'string') return quote(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return quote(JSON.stringify(v) ?? '');
}

const LEVEL_COLOR: Record<EventLevel, keyof typeof ANSI | undefined> = {
  error: 'red',
  warn: 'yellow',
  notice: 'cyan',
  info: undefined,
  debug: 'dim',
};

export function formatEvent(event: AuditEvent, opts: FormatOptions): string {
  const paint: Paint = opts.color ? (code, text) => `${ANSI[code]}${text}${ANSI.reset}` : (_c, text) => text;
  const head = HEADS[event.kind]?.(event, paint) ?? { text: '', used: [] };
  const used = new Set(head.used);
  const rest: string[] = [];
  for (const key of Object.keys(event)) {
    if (ENVELOPE.has(key) || used.has(key)) continue;
    const v = event[key];
    if (v === undefined) continue;
    rest.push(`${key}=${fieldValue(v)}`);
  }
  const level = (event.level ?? 'info') as EventLevel;
  const levelColor = LEVEL_COLOR[level];
  const kind = levelColor ? paint(levelColor, event.kind) : paint('bold', event.kind);
  const parts: string[] = [];
  if (opts.journal) parts.push(`<${SYSLOG_PRIORITY[level] ?? 6}>${kind}`);
  else parts.push(paint('dim', event.ts), kind);
  if (!HEADS[event.kind] && level !== 'info') parts.push(level.toUpperCase());
  if (head.text.length > 0) parts.push(head.text);
  if (rest.length > 0) parts.push(opts.color ? paint('dim', rest.join(' ')) : rest.join(' '));
  return parts.join(' ');
}

/** Colour only on a TTY and never with NO_COLOR (any non-empty value). */
export function shouldColor(stream: { isTTY?: boolean | undefined }, env: NodeJS.ProcessEnv): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return stream.isTTY === true;
}

/** systemd sets JOURNAL_STREAM when our output goes to the journal. */
export function isJournal(env: NodeJS.ProcessEnv): boolean {
  return env.JOURNAL_STREAM !== undefined && env.JOURNAL_STREAM !== '';
}
