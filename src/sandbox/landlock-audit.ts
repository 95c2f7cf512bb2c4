/**
 * Filesystem violations from the kernel: Landlock (ABI 7) writes each denial to the audit stream
 * (AUDIT_LANDLOCK_ACCESS 1423: domain, blockers, path; AUDIT_LANDLOCK_DOMAIN 1424: the domain's
 * creator pid and executable, once, at its first denial; the SYSCALL record 1300 of the same event:
 * the denied process's pid, comm, exe and syscall). The helper's `audit` mode reads the read-only
 * multicast group (root only: CAP_AUDIT_READ; it turns auditing on when no auditd did, and off again
 * when it stops) and prints those records; this file joins them per event and hands each denial to
 * the sandbox whose process tree it came from, as the same FsViolation the strace monitor emits.
 *
 * No ptrace stop per call: the kernel formats a record per *denial*. But with auditing on, every
 * task forked meanwhile (on the whole host, not only the sandbox) gets an audit context, so each of
 * its syscalls pays the audit entry/exit hooks (measured: 1.06× write-heavy, 1.10× stat-heavy; see
 * BENCHMARKS.md); that context is also what gives the SYSCALL record naming the process.
 * What it cannot see: refusals by the mount layer (EROFS on a read-only bind, ENOENT for a path not
 * bound, DAC's EACCES) happen earlier in the same syscall, before Landlock's hook, and leave no
 * record; only what Landlock itself refused is here. So strace stays the default where installed.
 */
import { execa, type ResultPromise } from 'execa';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { NemoclawError } from '../shared/errors.js';
import { accessOfBlockers } from './landlock.js';
import type { FsViolation, PathRules } from './monitor.js';
import { X86_64_SYSCALLS } from './syscalls-x86_64.js';

export interface AuditRecord {
  type: number;
  serial: number;
  fields: Record<string, string>;
}

/** `1423 audit(1796319333.733:79): domain=… blockers=fs.make_reg path="/root" dev="vda" ino=4005` */
export function parseAuditLine(line: string): AuditRecord | undefined {
  const m = /^(\d+) audit\(\d+\.\d+:(\d+)\):\s?(.*)$/.exec(line);
  if (!m) return undefined;
  const fields: Record<string, string> = {};
  const re = /([a-z_0-9]+)=("(?:[^"\\]|\\.)*"|\S*)/g;
  let f: RegExpExecArray | null;
  while ((f = re.exec(m[3]!)) !== null) {
    const raw = f[2]!;
    fields[f[1]!] = raw.startsWith('"') ? raw.slice(1, -1) : /^[0-9A-F]+$/.test(raw) && raw.length % 2 === 0 && f[1] === 'path' ? hexDecode(raw) : raw;
  }
  return { type: Number(m[1]), serial: Number(m[2]), fields };
}

/** Audit writes a path with odd characters (space, quote, non-ASCII) as unquoted hex. */
function hexDecode(hex: string): string {
  return Buffer.from(hex, 'hex').toString('utf8');
}

const SYSCALL_NAMES = new Map<number, string>(Object.entries(X86_64_SYSCALLS).map(([name, nr]) => [nr, name]));
const ERRNO_NAMES: Record<number, string> = { 1: 'EPERM', 2: 'ENOENT', 13: 'EACCES', 18: 'EXDEV', 30: 'EROFS', 111: 'ECONNREFUSED' };

function under(path: string, prefix: string): boolean {
  return prefix === '/' || path === prefix || path.startsWith(`${prefix}/`);
}

function longest(path: string, list: string[]): number {
  let best = -1;
  list.forEach((e, i) => {
    if (under(path, e) && (best < 0 || e.length > list[best]!.length)) best = i;
  });
  return best;
}

/** A Landlock denial as an fs.violation: the rule is the policy entry, else "not granted". */
export function violationFromRecords(access: AuditRecord, syscall: AuditRecord | undefined, rules: PathRules): FsViolation & { source: 'landlock'; blockers: string[]; domain: string } {
  const blockers = (access.fields.blockers ?? '').split(',').filter(Boolean);
  const path = access.fields.path ?? (access.fields.daddr ? `${access.fields.daddr}:${access.fields.dest ?? '?'}` : '?');
  const kind = accessOfBlockers(blockers);
  const h = longest(path, rules.hidden);
  const ro = longest(path, rules.readOnly);
  const rule =
    h >= 0
      ? `filesystem_policy.hidden[${h}]: ${rules.hidden[h]} (refused by Landlock)`
      : ro >= 0 && kind === 'write'
        ? `filesystem_policy.read_only[${ro}]: ${rules.readOnly[ro]} (refused by Landlock)`
        : 'not granted by the Landlock ruleset (outside the sandbox allowlist)';
  const exit = syscall ? Number(syscall.fields.exit) : Number.NaN;
  const nr = syscall ? Number(syscall.fields.syscall) : Number.NaN;
  return {
    pid: syscall ? Number(syscall.fields.pid) : Number.NaN,
    binary: syscall?.fields.exe,
    syscall: SYSCALL_NAMES.get(nr) ?? (syscall ? `syscall ${syscall.fields.syscall}` : 'unknown'),
    path,
    errno: exit < 0 ? (ERRNO_NAMES[-exit] ?? `errno ${-exit}`) : 'EACCES',
    rule,
    access: kind,
    source: 'landlock',
    blockers,
    domain: access.fields.domain ?? '?',
  };
}

export interface AuditSubscriber {
  /** The sandbox's root pid on the host: its processes are its descendants. */
  rootPid: number;
  rules: PathRules;
  /** The helper's path inside the sandbox: its own one probe denial registers the domain. */
  helperInside: string;
  emit(v: FsViolation): void;
}

/** Ancestors of `pid` (itself first), bounded; empty when it is gone. */
function ancestry(pid: number, max = 64): number[] {
  const out: number[] = [];
  let p = pid;
  for (let i = 0; i < max && p > 1; i++) {
    out.push(p);
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      p = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      break;
    }
  }
  return out;
}

/**
 * Joins the records of one event (Landlock's, then the SYSCALL record at the syscall's exit, same
 * serial) and routes each denial to its sandbox: by domain id once known (learned from the domain
 * record's creator pid, the helper's own probe), else by the denied pid's ancestry.
 */
export class AuditJoiner {
  private readonly subs = new Set<AuditSubscriber>();
  private readonly domains = new Map<string, AuditSubscriber>();
  private pending: { serial: number; access: AuditRecord[] } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private last = '';
  constructor(private readonly ancestors: (pid: number) => number[] = ancestry) {}

  add(s: AuditSubscriber): () => void {
    this.subs.add(s);
    return () => {
      this.subs.delete(s);
      for (const [d, sub] of this.domains) if (sub === s) this.domains.delete(d);
    };
  }

  get size(): number {
    return this.subs.size;
  }

  private byPid(pid: number): AuditSubscriber | undefined {
    if (!Number.isFinite(pid)) return undefined;
    const chain = new Set(this.ancestors(pid));
    for (const s of this.subs) if (chain.has(s.rootPid)) return s;
    return undefined;
  }

  line(text: string): void {
    const r = parseAuditLine(text);
    if (!r) return;
    if (this.pending && this.pending.serial !== r.serial) this.flush(undefined);
    if (r.type === 1424) {
      if (r.fields.status === 'allocated' && r.fields.domain) {
        const s = this.byPid(Number(r.fields.pid));
        if (s) this.domains.set(r.fields.domain, s);
      } else if (r.fields.status === 'deallocated' && r.fields.domain) this.domains.delete(r.fields.domain);
      return;
    }
    if (r.type === 1423) {
      this.pending ??= { serial: r.serial, access: [] };
      this.pending.access.push(r);
      clearTimeout(this.timer);
      // A denial without a SYSCALL record (none follows on some paths) still goes out.
      this.timer = setTimeout(() => this.flush(undefined), 50);
      this.timer.unref?.();
      return;
    }
    if (r.type === 1300 && this.pending?.serial === r.serial) this.flush(r);
  }

  flush(syscall: AuditRecord | undefined): void {
    const p = this.pending;
    this.pending = undefined;
    clearTimeout(this.timer);
    if (!p) return;
    for (const a of p.access) {
      const domain = a.fields.domain;
      let s = domain ? this.domains.get(domain) : undefined;
      if (!s && syscall) {
        s = this.byPid(Number(syscall.fields.pid));
        if (s && domain) this.domains.set(domain, s);
      }
      if (!s) continue; // another program's Landlock domain, not a sandbox of this supervisor
      // A refused TCP connect or bind (blockers net.*) or a scope (scope.*) is not a file access:
      // it must not appear as an fs.violation with an address for a path.
      if (!(a.fields.blockers ?? '').split(',').some((b) => b.startsWith('fs.'))) continue;
      // The helper's one probe of "/" before it executes the command: registration, not a violation.
      if (syscall?.fields.exe === s.helperInside) continue;
      const v = violationFromRecords(a, syscall, s.rules);
      // One syscall can be refused twice for one path (a retry); distinct rights stay distinct.
      const key = `${a.serial}:${v.pid}:${v.path}:${v.blockers.join(',')}`;
      if (key === this.last) continue;
      this.last = key;
      s.emit(v);
    }
  }
}

/** One reader per supervisor process, shared by its sandboxes; started on first use. */
export class KernelViolationSource {
  private child: ResultPromise | undefined;
  private ready: Promise<void> | undefined;
  readonly joiner = new AuditJoiner();
  private stopTimer: NodeJS.Timeout | undefined;
  /** Why it could not start (for status and doctor). */
  failure: string | undefined;

  constructor(private readonly helper: string) {}

  /** Start reading (once); rejects with a NemoclawError when the kernel stream is not readable. */
  start(): Promise<void> {
    clearTimeout(this.stopTimer);
    if (this.ready) return this.ready;
    const child = execa(this.helper, ['audit', '--enable'], { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', reject: false, buffer: false, cleanup: true });
    this.child = child;
    this.ready = new Promise<void>((resolve, reject) => {
      let err = '';
      (child.stderr as Readable | null)?.on('data', (d: Buffer) => {
        if (err.length < 2000) err += d.toString();
      });
      const rl = createInterface({ input: child.stdout as Readable, crlfDelay: Infinity });
      let started = false;
      rl.on('line', (l) => {
        if (!started && l.startsWith('ready')) {
          started = true;
          resolve();
          return;
        }
        if (started) this.joiner.line(l);
      });
      void (child as unknown as Promise<{ exitCode?: number }>).then((r) => {
        this.child = undefined;
        this.ready = undefined;
        if (!started) {
          this.failure = `the kernel audit stream is not readable (${err.trim() || `exit ${r.exitCode}`})`;
          reject(new NemoclawError('prerequisite_missing', this.failure, { nextStep: 'run the supervisor as root (reading the audit stream needs CAP_AUDIT_READ); the strace monitor is used instead' }));
        }
      });
    });
    this.ready.catch(() => undefined);
    return this.ready;
  }

  /** Attach a sandbox; the returned function detaches it, and the reader stops when none is left. */
  subscribe(s: AuditSubscriber): () => void {
    const off = this.joiner.add(s);
    return () => {
      // Records of the sandbox's last denials may still be in flight: detach a moment later.
      setTimeout(() => {
        off();
        if (this.joiner.size === 0) this.stopSoon();
      }, 200).unref?.();
    };
  }

  private stopSoon(): void {
    clearTimeout(this.stopTimer);
    // Kept a while for the next sandbox (a restart, the next `run`): starting costs a process.
    this.stopTimer = setTimeout(() => this.stop(), 30_000);
    this.stopTimer.unref?.();
  }

  /** Closing stdin makes the helper turn auditing back off (when it turned it on) and exit. */
  stop(): void {
    clearTimeout(this.stopTimer);
    const c = this.child;
    this.child = undefined;
    this.ready = undefined;
    c?.stdin?.end();
  }
}

const sources = new Map<string, KernelViolationSource>();
export function kernelViolationSource(helper: string): KernelViolationSource {
  let s = sources.get(helper);
  if (!s) {
    s = new KernelViolationSource(helper);
    sources.set(helper, s);
  }
  return s;
}
