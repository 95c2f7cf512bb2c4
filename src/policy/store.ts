import { appendFile, mkdir, open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { stringify } from 'yaml';
import type { EventInput } from '../audit/events.js';
import { createHash } from 'node:crypto';
import type { OverlayRule, PolicyStore, RuleRemoval, RuleView } from '../control/types.js';
import { systemClock, type Clock } from '../shared/clock.js';
import { NemoclawError } from '../shared/errors.js';
import { writeFileAtomic } from '../shared/fs.js';
import type { SandboxPaths } from '../shared/home.js';
import { canonicalPolicyYaml, sha256Hex, stableJson } from './canonical.js';
import { unifiedDiff } from './diff.js';
import { ANY_PORT, compileNetworkMatcher, type NetworkMatcher } from './matcher.js';
import { isValidHostPattern, normalizeHost } from './net.js';
import { parsePolicy, policyInvalid, validateYaml, type ParsedPolicy, type PolicyIssue } from './parse.js';
import { overlayFileSchema, type OverlayFileRule } from './schema.js';
import type { NetworkDecision, NetworkPolicy, NetworkQuery, PolicyDocument, PolicyRevision, RevisionAuthor } from './types.js';

export interface PolicyStoreOptions {
  paths: SandboxPaths;
  /** Text of the base policy the supervisor starts with. */
  baseText: string;
  /** Where baseText came from (a path, for messages). */
  source: string;
  clock?: Clock;
  /** Receives a `policy.revision` event for every accepted revision. */
  emit: (e: EventInput) => void;
  presetsDir?: string;
}

/**
 * How many recent revisions keep their diff in memory (GET /v1/policy/history). Older ones keep
 * number, sha256, author, time and reason; their diff stays in policy-history.jsonl and the audit
 * log. Without this bound a long-lived supervisor holds every diff it ever made (one per policy
 * set / always-allow), and sends them all to every TUI that refreshes its policy pane.
 */
export const DIFFS_KEPT_IN_MEMORY = 50;
export const DIFF_NOT_KEPT = '(diff not kept in memory: see policy-history.jsonl or the audit log)\n';

/** Sections that shape the sandbox itself; they only change with a restart. */
export const STATIC_SECTIONS = ['filesystem_policy', 'process', 'landlock'] as const;

interface HistoryLine extends PolicyRevision {
  /** Canonical YAML of the effective policy at this revision (to diff against after a restart). */
  yaml?: string;
}

const EMPTY_OVERLAY_NOTE =
  '# Operator overlay of nemoclaw-tui: "always allow" / "always deny" rules, merged on top of the policy.\n' +
  '# Written by the TUI and approvals; it survives restarts. Edit with care (it is validated on start).\n';

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new NemoclawError('io', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** The policy name of an overlay rule; a time-boxed one says until when (seen in `policy` and in events' `rule`). */
function overlayPolicyName(rule: OverlayRule): string {
  return `overlay:${rule.action}:${rule.host}:${rule.port}${rule.binary ? `@${rule.binary}` : ''}${rule.expires_at ? ` until ${rule.expires_at}` : ''}`;
}

function sessionPolicyName(rule: OverlayRule): string {
  return `session:${rule.action}:${rule.host}:${rule.port}${rule.binary ? `@${rule.binary}` : ''}`;
}

/**
 * A rule's id: derived from what it covers (host, port, binary), which is also what makes two rules
 * the same (sameTarget), so it is stable across restarts without being stored in overlay.yaml.
 */
export function ruleId(scope: 'overlay' | 'session', rule: Pick<OverlayRule, 'host' | 'port' | 'binary'>): string {
  const h = createHash('sha256').update(`${rule.host}\n${String(rule.port)}\n${rule.binary ?? ''}`).digest('hex');
  return `${scope === 'overlay' ? 'r' : 's'}-${h.slice(0, 8)}`;
}

/** Whether a time-boxed rule's time is up at `now` (ms). */
function expiredAt(rule: OverlayRule, now: number): boolean {
  return rule.expires_at !== undefined && Date.parse(rule.expires_at) <= now;
}

function ruleToPolicy(name: string, rule: OverlayRule): NetworkPolicy {
  return {
    name,
    action: rule.action,
    endpoints: [{ host: rule.host, ports: [rule.port === 'any' ? ANY_PORT : rule.port], rules: [], deny_rules: [], allowed_ips: [] }],
    // No binary recorded: the rule covers every program (`/**`); an allow policy without
    // `binaries` would cover none.
    binaries: [{ path: rule.binary ?? '/**' }],
  };
}

function sameTarget(a: OverlayRule, b: OverlayRule): boolean {
  return a.host === b.host && a.port === b.port && (a.binary ?? '') === (b.binary ?? '');
}

function validateRule(rule: OverlayRule): OverlayRule {
  const problems: string[] = [];
  if (rule.action !== 'allow' && rule.action !== 'deny') problems.push('action must be allow or deny');
  if (typeof rule.host !== 'string' || !isValidHostPattern(rule.host)) problems.push(`host "${String(rule.host)}" is not a host name, IP or *-glob`);
  if (rule.port !== 'any' && (!Number.isInteger(rule.port) || rule.port < 1 || rule.port > 65535)) problems.push(`port ${String(rule.port)} is not 1-65535 (or any)`);
  if (rule.binary !== undefined && (typeof rule.binary !== 'string' || !rule.binary.startsWith('/'))) problems.push('binary must be an absolute path');
  if (rule.expires_at !== undefined && (typeof rule.expires_at !== 'string' || !Number.isFinite(Date.parse(rule.expires_at)))) problems.push('expires_at must be an ISO time');
  if (problems.length > 0) {
    throw new NemoclawError('invalid_input', `invalid overlay rule: ${problems.join('; ')}`, {
      nextStep: 'give a host name and a port from 1 to 65535 (and optionally an absolute binary path)',
      exitCode: 2,
    });
  }
  const out: OverlayRule = { action: rule.action, host: normalizeHost(rule.host), port: rule.port };
  if (rule.binary !== undefined) out.binary = rule.binary;
  if (rule.expires_at !== undefined) out.expires_at = new Date(Date.parse(rule.expires_at)).toISOString();
  return out;
}

/** The deny-all policy of a quarantined sandbox (in `policy` output and in events' `rule`). */
export const QUARANTINE_POLICY = 'quarantine:deny-all';

class FilePolicyStore implements PolicyStore {
  private base!: ParsedPolicy;
  private overlay: OverlayFileRule[] = [];
  private readonly session: Array<OverlayRule & { time: string }> = [];
  /** When the next time-boxed rule ends (ms), while one is in the overlay; its timer. */
  private nextExpiry: number | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  /** The quarantine's refusal text while the sandbox is quarantined (a deny-all on top). */
  private quarantine: string | undefined;
  private effective!: PolicyDocument;
  private effectiveText = '';
  private matcher!: NetworkMatcher;
  private revisions: PolicyRevision[] = [];
  private lastYaml: string | undefined;
  private readonly listeners = new Set<(rev: PolicyRevision, doc: PolicyDocument) => void>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: PolicyStoreOptions & { clock: Clock }) {}

  async init(): Promise<void> {
    const { paths } = this.opts;
    this.base = parsePolicy(this.opts.baseText, this.opts.source, { presetsDir: this.opts.presetsDir });
    this.overlay = await this.loadOverlay();
    // A crash mid-append leaves a torn last line; cut it off (kept in .torn) so the next revision
    // starts on its own line instead of being glued to it and lost on the next load.
    const torn = await recoverTornTail(paths.policyHistoryFile);
    if (torn) {
      this.opts.emit({ kind: 'sandbox.lifecycle', level: 'warn', action: 'policy_history.recovered', file: paths.policyHistoryFile, torn_bytes: torn.tornBytes, saved_to: torn.savedTo, offset: torn.offset });
    }
    const history = await this.loadHistory();
    this.revisions = history.map(({ yaml: _yaml, ...rev }) => rev);
    this.forgetOldDiffs(0);
    this.lastYaml = history.at(-1)?.yaml;
    await writeFileAtomic(paths.policyFile, this.opts.baseText);
    const rev = await this.commit('startup', `started with ${this.opts.source}`, true);
    if (!rev) throw new NemoclawError('internal', 'policy store did not record its startup revision');
  }

  /** Warnings of the running base policy ("not enforced here"). */
  warnings(): PolicyIssue[] {
    return this.base.warnings;
  }

  current(): PolicyDocument {
    return this.effective;
  }

  revision(): PolicyRevision {
    return this.revisions[this.revisions.length - 1]!;
  }

  history(): PolicyRevision[] {
    return [...this.revisions];
  }

  decideNetwork(query: NetworkQuery): NetworkDecision {
    if (this.nextExpiry !== undefined && this.opts.clock.now() >= this.nextExpiry) {
      // A time-boxed rule's time is up but its timer has not run yet (a busy loop, a suspended
      // process): it stops applying now, not when the revision that removes it is written.
      this.nextExpiry = undefined;
      this.matcher = compileNetworkMatcher(this.withSession(this.buildEffective()));
      void this.expireDue().catch(() => undefined);
    }
    return this.matcher.decide(query);
  }

  effectiveYaml(): string {
    return this.effectiveText;
  }

  apply(yamlText: string, author: RevisionAuthor, source = 'policy'): Promise<PolicyRevision> {
    return this.serial(async () => {
      const next = parsePolicy(yamlText, source, { presetsDir: this.opts.presetsDir });
      const changed = STATIC_SECTIONS.filter((s) => stableJson(this.base.doc[s] ?? {}) !== stableJson(next.doc[s] ?? {}));
      if (changed.length > 0) {
        const file = source.includes('/') || source.endsWith('.yaml') ? source : 'FILE';
        throw new NemoclawError(
          'policy_static_change',
          `${source} changes ${changed.join(', ')}, which cannot change while the sandbox runs; the running policy is unchanged`,
          {
            nextStep: `restart the sandbox with the new file: nemoclaw-tui down && nemoclaw-tui up --policy ${file}`,
            exitCode: 2,
            details: { sections: changed },
          },
        );
      }
      const previous = this.base;
      this.base = next;
      try {
        const rev = await this.commit(author, `policy set from ${source}`, false, async () => {
          await writeFileAtomic(this.opts.paths.policyFile, yamlText);
        });
        return rev ?? this.revision();
      } catch (err) {
        this.base = previous;
        throw err;
      }
    });
  }

  addOverlayRule(input: OverlayRule, author: RevisionAuthor, reason?: string): Promise<PolicyRevision> {
    let rule: OverlayRule;
    try {
      rule = validateRule(input);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.serial(async () => {
      const previous = this.overlay;
      const entry: OverlayFileRule = { ...rule, author, time: new Date(this.opts.clock.now()).toISOString() };
      if (reason !== undefined) entry.reason = reason;
      this.overlay = [...previous.filter((r) => !sameTarget(r, rule)), entry];
      try {
        const why = reason ?? `${rule.expires_at ? `${rule.action} until ${rule.expires_at}` : `always ${rule.action}`} ${rule.host}:${rule.port}${rule.binary ? ` for ${rule.binary}` : ''}`;
        const rev = await this.commit(author, why, false, () => this.saveOverlay());
        return rev ?? this.revision();
      } catch (err) {
        this.overlay = previous;
        throw err;
      }
    });
  }

  addSessionAllow(input: OverlayRule): void {
    this.addSessionRule({ ...input, action: 'allow' });
  }

  addSessionRule(input: OverlayRule): void {
    const { expires_at: _e, ...rest } = input;
    const rule = validateRule(rest);
    const i = this.session.findIndex((r) => sameTarget(r, rule));
    if (i >= 0 && this.session[i]!.action === rule.action) return;
    // The later decision for the same target replaces the earlier one (as in the overlay).
    if (i >= 0) this.session.splice(i, 1);
    this.session.push({ ...rule, time: new Date(this.opts.clock.now()).toISOString() });
    this.matcher = compileNetworkMatcher(this.withSession(this.effective));
  }

  rules(): RuleView[] {
    const now = this.opts.clock.now();
    const view = (scope: 'overlay' | 'session', r: OverlayRule & { author?: string; time?: string; reason?: string }): RuleView => {
      const until = r.expires_at === undefined ? undefined : Date.parse(r.expires_at);
      return {
        id: ruleId(scope, r),
        scope,
        action: r.action,
        host: r.host,
        port: r.port,
        binary: r.binary ?? null,
        expires_at: r.expires_at ?? null,
        expires_in_ms: until === undefined ? null : Math.max(0, until - now),
        author: r.author ?? (scope === 'session' ? 'approval' : null),
        time: r.time ?? null,
        reason: r.reason ?? null,
        policy: scope === 'overlay' ? overlayPolicyName(r) : sessionPolicyName(r),
      };
    };
    return [...this.overlay.filter((r) => !expiredAt(r, now)).map((r) => view('overlay', r)), ...this.session.map((r) => view('session', r))];
  }

  removeRule(id: string, author: RevisionAuthor, reason?: string): Promise<RuleRemoval> {
    return this.serial(async () => {
      const found = this.rules().find((r) => r.id === id);
      if (!found) {
        throw new NemoclawError('not_found', `no operator rule ${JSON.stringify(id.slice(0, 40))} (removed already, expired, or never existed)`, {
          nextStep: 'list the rules with `nemoclaw-tui rules list`',
          exitCode: 2,
        });
      }
      const what = `${found.action} ${found.host}:${String(found.port)}${found.binary ? ` for ${found.binary}` : ' for any binary'}`;
      const why = `removed ${found.scope} rule ${id} (${what})${reason ? `: ${reason}` : ''}`;
      if (found.scope === 'session') {
        const i = this.session.findIndex((r) => ruleId('session', r) === id);
        const [gone] = this.session.splice(i, 1);
        try {
          // Session rules are not part of the effective policy, so the revision is recorded even
          // though its sha256 does not change: the removal must be in the audit log all the same.
          const rev = await this.commit(author, why, true);
          return { removed: found, revision: rev ?? this.revision() };
        } catch (err) {
          this.session.splice(i, 0, gone!);
          throw err;
        }
      }
      const previous = this.overlay;
      this.overlay = previous.filter((r) => ruleId('overlay', r) !== id);
      try {
        const rev = await this.commit(author, why, false, () => this.saveOverlay());
        return { removed: found, revision: rev ?? this.revision() };
      } catch (err) {
        this.overlay = previous;
        throw err;
      }
    });
  }

  setQuarantine(refusal: string | undefined, author: RevisionAuthor, reason: string): Promise<PolicyRevision> {
    return this.serial(async () => {
      const previous = this.quarantine;
      this.quarantine = refusal;
      try {
        return (await this.commit(author, reason, false)) ?? this.revision();
      } catch (err) {
        this.quarantine = previous;
        throw err;
      }
    });
  }

  expireDue(): Promise<PolicyRevision | undefined> {
    return this.serial(async () => {
      const now = this.opts.clock.now();
      const due = this.overlay.filter((r) => expiredAt(r, now));
      if (due.length === 0) {
        this.armExpiry();
        return undefined;
      }
      const previous = this.overlay;
      this.overlay = previous.filter((r) => !expiredAt(r, now));
      const names = due.map((r) => `${ruleId('overlay', r)} ${r.action} ${r.host}:${String(r.port)}${r.binary ? ` for ${r.binary}` : ''}`);
      try {
        // always: a rule that ended before a restart was never in this run's effective policy, but
        // its end still belongs in the log (and overlay.yaml is rewritten without it).
        return await this.commit('expiry', `time-boxed rule${due.length === 1 ? '' : 's'} ended: ${names.join('; ')}`, true, () => this.saveOverlay());
      } catch (err) {
        this.overlay = previous;
        this.armExpiry();
        throw err;
      }
    });
  }

  /** Time the next expiry (a timer that does not keep the process alive). */
  private armExpiry(): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const times = this.overlay.filter((r) => r.expires_at !== undefined).map((r) => Date.parse(r.expires_at!));
    this.nextExpiry = times.length > 0 ? Math.min(...times) : undefined;
    if (this.nextExpiry === undefined) return;
    // setTimeout takes at most 2^31-1 ms; a later expiry re-arms when this one fires.
    const wait = Math.min(Math.max(0, this.nextExpiry - this.opts.clock.now()), 0x7fffffff);
    this.expiryTimer = setTimeout(() => void this.expireDue().catch(() => undefined), wait);
    this.expiryTimer.unref?.();
  }

  onChange(listener: (rev: PolicyRevision, doc: PolicyDocument) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private buildEffective(): PolicyDocument {
    const policies: Record<string, NetworkPolicy> = { ...this.base.doc.network_policies };
    const now = this.opts.clock.now();
    for (const rule of this.overlay) {
      if (expiredAt(rule, now)) continue;
      const name = overlayPolicyName(rule);
      policies[name] = ruleToPolicy(name, rule);
    }
    if (this.quarantine !== undefined) {
      // Deny wins over every allow in the matcher, whatever bucket the allow is in: `**` is every
      // host (names and IPs), ANY_PORT every port, `/**` every program.
      policies[QUARANTINE_POLICY] = {
        name: QUARANTINE_POLICY,
        action: 'deny',
        refusal: this.quarantine,
        endpoints: [{ host: '**', ports: [ANY_PORT], rules: [], deny_rules: [], allowed_ips: [] }],
        binaries: [{ path: '/**' }],
      };
    }
    return { ...this.base.doc, network_policies: policies };
  }

  private withSession(doc: PolicyDocument): PolicyDocument {
    if (this.session.length === 0) return doc;
    const policies = { ...doc.network_policies };
    for (const rule of this.session) {
      const name = sessionPolicyName(rule);
      policies[name] = ruleToPolicy(name, rule);
    }
    return { ...doc, network_policies: policies };
  }

  /**
   * Make the current base + overlay the running policy as a new revision (persisted first, then
   * swapped in, then announced). Returns undefined when nothing changed (no new revision).
   */
  private async commit(
    author: RevisionAuthor,
    reason: string,
    always: boolean,
    persist?: () => Promise<void>,
  ): Promise<PolicyRevision | undefined> {
    const effective = this.buildEffective();
    const text = canonicalPolicyYaml(effective);
    const sha256 = sha256Hex(text);
    const last = this.revisions[this.revisions.length - 1];
    if (!always && last && last.sha256 === sha256) {
      if (persist) await persist();
      return undefined;
    }
    const number = (last?.number ?? 0) + 1;
    const diff = unifiedDiff(this.lastYaml ?? '', text, `policy@${last?.number ?? 0}`, `policy@${number}`);
    const rev: PolicyRevision = { number, sha256, author, time: new Date(this.opts.clock.now()).toISOString(), diff, reason };
    const matcher = compileNetworkMatcher(this.withSession(effective));
    try {
      if (persist) await persist();
      await mkdir(dirname(this.opts.paths.policyHistoryFile), { recursive: true, mode: 0o700 });
      const line: HistoryLine = { ...rev, yaml: text };
      await appendWholeLine(this.opts.paths.policyHistoryFile, `${JSON.stringify(line)}\n`);
    } catch (err) {
      if (err instanceof NemoclawError) throw err;
      throw new NemoclawError('io', `cannot record policy revision ${number}: ${(err as Error).message}`, {
        nextStep: `check that ${this.opts.paths.dir} is writable; the running policy is unchanged`,
        cause: err,
      });
    }
    this.effective = effective;
    this.effectiveText = text;
    this.matcher = matcher;
    this.lastYaml = text;
    this.revisions.push(rev);
    this.forgetOldDiffs(this.revisions.length - DIFFS_KEPT_IN_MEMORY - 1);
    this.armExpiry();
    this.opts.emit({ kind: 'policy.revision', level: 'notice', number, sha256, author, diff, reason, time: rev.time });
    for (const listener of this.listeners) {
      try {
        listener(rev, effective);
      } catch {
        // A failing listener must not undo or block an accepted revision.
      }
    }
    return rev;
  }

  /** Drop the diffs of all but the newest DIFFS_KEPT_IN_MEMORY revisions, from index `from` on. */
  private forgetOldDiffs(from: number): void {
    const end = this.revisions.length - DIFFS_KEPT_IN_MEMORY;
    for (let i = Math.max(0, from); i < end; i++) {
      const rev = this.revisions[i]!;
      if (rev.diff !== DIFF_NOT_KEPT) this.revisions[i] = { ...rev, diff: DIFF_NOT_KEPT };
    }
  }

  private async loadOverlay(): Promise<OverlayFileRule[]> {
    const file = this.opts.paths.overlayFile;
    const text = await readOptional(file);
    if (text === undefined || text.trim() === '') return [];
    const result = validateYaml(text, file, overlayFileSchema);
    if (!result.ok) {
      const err = policyInvalid(file, result.issues);
      throw new NemoclawError('policy_invalid', err.message, {
        nextStep: `fix or remove the operator overlay ${file} (it holds "always allow/deny" rules)`,
        exitCode: 2,
        details: result.issues,
      });
    }
    return result.value.data.rules;
  }

  private async saveOverlay(): Promise<void> {
    const body = stringify({ version: 1, rules: this.overlay }, { lineWidth: 0, aliasDuplicateObjects: false });
    await writeFileAtomic(this.opts.paths.overlayFile, EMPTY_OVERLAY_NOTE + body);
  }

  private async loadHistory(): Promise<HistoryLine[]> {
    const text = await readOptional(this.opts.paths.policyHistoryFile);
    if (!text) return [];
    const out: HistoryLine[] = [];
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const rec = JSON.parse(line) as HistoryLine;
        if (typeof rec.number === 'number' && typeof rec.sha256 === 'string') out.push(rec);
      } catch {
        // A torn last line from a crash: the revision it described was never announced.
      }
    }
    return out;
  }
}

/** What recoverTornTail removed from the end of an append-only file. */
export interface TornTail {
  /** Offset the file was cut to (end of its last complete line). */
  offset: number;
  tornBytes: number;
  /** Where the removed bytes were appended, for forensics. */
  savedTo: string;
}

/**
 * Recover the torn tail of an append-only JSONL file, as the audit log does: bytes after the last
 * newline (a line a crash left half-written) are appended to `<file>.torn` and the file is cut back
 * to its last complete line. Undefined when the file is missing or ends in a newline.
 */
export async function recoverTornTail(path: string): Promise<TornTail | undefined> {
  let fh;
  try {
    fh = await open(path, 'r+');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const size = (await fh.stat()).size;
    if (size === 0) return undefined;
    // Read backwards to the last newline (a torn line is at most one record long).
    let window = Math.min(size, 64 * 1024);
    let goodEnd = 0;
    for (;;) {
      const buf = Buffer.alloc(window);
      await fh.read(buf, 0, window, size - window);
      const nl = buf.lastIndexOf(10);
      if (nl >= 0) {
        goodEnd = size - window + nl + 1;
        break;
      }
      if (window === size) break;
      window = Math.min(size, window * 4);
    }
    if (goodEnd === size) return undefined;
    const torn = Buffer.alloc(size - goodEnd);
    await fh.read(torn, 0, torn.length, goodEnd);
    const savedTo = `${path}.torn`;
    await appendFile(savedTo, torn, { mode: 0o600 });
    await fh.truncate(goodEnd);
    await fh.datasync();
    return { offset: goodEnd, tornBytes: torn.length, savedTo };
  } finally {
    await fh.close();
  }
}

/** Append one line whole: short writes are continued; on failure the file is cut back (no partial line stays). */
async function appendWholeLine(path: string, line: string): Promise<void> {
  const fh = await open(path, 'a', 0o600);
  try {
    const start = (await fh.stat()).size;
    const buf = Buffer.from(line);
    try {
      let off = 0;
      while (off < buf.length) {
        const { bytesWritten } = await fh.write(buf, off, buf.length - off);
        if (bytesWritten <= 0) throw Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' });
        off += bytesWritten;
      }
      await fh.datasync();
    } catch (err) {
      await fh.truncate(start).catch(() => undefined);
      throw err;
    }
  } finally {
    await fh.close();
  }
}

/** Create the running policy store of a sandbox (records a `startup` revision). */
export async function createPolicyStore(opts: PolicyStoreOptions): Promise<PolicyStore & { warnings(): PolicyIssue[] }> {
  const store = new FilePolicyStore({ ...opts, clock: opts.clock ?? systemClock });
  await store.init();
  return store;
}
