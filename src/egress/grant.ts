/**
 * What a decision on a held request writes, exactly as the operator chose it (the TUI's scope
 * chooser, `approve`/`deny --scope … --binary … --for …`): this binary or any binary; this
 * host:port, this host on any port, or every host one label under its domain (`*.example.com`);
 * for this once, a time box (15 min, 1 h, any `--for`), until the supervisor restarts, or always.
 */
import { isIP } from 'node:net';
import type { OverlayRule } from '../control/types.js';
import { NemoclawError } from '../shared/errors.js';
import type { ApprovalDecision, PendingView } from './pending.js';

export type BinaryScope = 'this' | 'any';
export type HostScope = 'exact' | 'any_port' | 'domain';
export const BINARY_SCOPES: readonly BinaryScope[] = ['this', 'any'];
export const HOST_SCOPES: readonly HostScope[] = ['exact', 'any_port', 'domain'];

/** How long a decision lasts: once (no rule), a time box in ms, until restart, or always. */
export type Lasts = 'once' | 'restart' | 'always' | { ms: number };

export interface GrantScope {
  binary?: BinaryScope;
  host?: HostScope;
  /** ISO end of a time-boxed rule. */
  expires_at?: string;
  /** A deny until the supervisor restarts (an allow until restart is the `session` decision). */
  session?: boolean;
}

/** The longest time box (a longer grant is an `always` the operator removes). */
export const MAX_GRANT_MS = 7 * 24 * 3_600_000;

/**
 * `*.rest` for a host with at least three labels (`api.github.com` → `*.github.com`); undefined for
 * an IP or a two-label name, whose glob would not cover the host itself (`*` is one label).
 */
export function domainGlob(host: string): string | undefined {
  if (isIP(host) !== 0 || host.includes('*')) return undefined;
  const labels = host.split('.');
  return labels.length >= 3 ? `*.${labels.slice(1).join('.')}` : undefined;
}

/** `15m`, `1h`, `90s`, `2d` → ms; undefined when it is none of them. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)(s|m|h|d)$/.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

/** `--for` / the chooser's lifetime: once, restart, always, or a duration (`15m`, `1h`). */
export function parseLasts(text: string): Lasts {
  const t = text.trim().toLowerCase();
  if (t === 'once' || t === 'restart' || t === 'always') return t;
  const ms = parseDuration(t);
  if (ms === undefined || ms <= 0 || ms > MAX_GRANT_MS) {
    throw new NemoclawError('invalid_input', `--for must be once, restart, always, or a duration up to 7d such as 15m or 1h (got "${text.slice(0, 20)}")`, {
      nextStep: 'e.g. --for 15m, --for 1h, --for restart, --for always',
      exitCode: 2,
    });
  }
  return { ms };
}

/** The decision and scope an allow or deny for `lasts` becomes (`now`: ms, for a time box's end). */
export function decisionFor(allow: boolean, lasts: Lasts, now: number): { decision: ApprovalDecision; expires_at?: string; session?: boolean } {
  if (lasts === 'once') return { decision: allow ? 'once' : 'deny' };
  if (lasts === 'restart') return allow ? { decision: 'session' } : { decision: 'deny_always', session: true };
  if (lasts === 'always') return { decision: allow ? 'always' : 'deny_always' };
  return { decision: allow ? 'always' : 'deny_always', expires_at: new Date(now + lasts.ms).toISOString() };
}

/**
 * The rule a session / always / deny-always decision writes for `entry`, or undefined for once / deny.
 * Defaults (no scope given): an allow covers the binary the request was identified with (the prompt
 * names it), a deny every binary (the stricter reading); host:port exactly. A scope that cannot
 * cover the request (this binary when none was identified, a domain glob of an IP) is refused.
 */
export function ruleForDecision(entry: Pick<PendingView, 'host' | 'port' | 'binary'>, decision: ApprovalDecision, scope: GrantScope = {}): OverlayRule | undefined {
  if (decision !== 'session' && decision !== 'always' && decision !== 'deny_always') return undefined;
  const known = typeof entry.binary === 'string' && entry.binary.startsWith('/') ? entry.binary : undefined;
  const binaryScope = scope.binary ?? (decision === 'deny_always' ? 'any' : known ? 'this' : 'any');
  if (binaryScope === 'this' && !known) {
    throw new NemoclawError('invalid_input', `the request to ${entry.host}:${entry.port} has no identified binary, so a rule for "this binary" cannot be written`, {
      nextStep: 'choose any binary (--binary any)',
      exitCode: 2,
    });
  }
  let host = entry.host;
  let port: number | 'any' = entry.port;
  if (scope.host === 'any_port') port = 'any';
  if (scope.host === 'domain') {
    const glob = domainGlob(entry.host);
    if (!glob) {
      throw new NemoclawError('invalid_input', `${entry.host} has no domain to cover with a *. glob (an IP, or a name of two labels)`, {
        nextStep: 'choose this host (--scope exact or --scope any-port)',
        exitCode: 2,
      });
    }
    host = glob;
  }
  const rule: OverlayRule = { action: decision === 'deny_always' ? 'deny' : 'allow', host, port };
  if (binaryScope === 'this') rule.binary = known;
  if (scope.expires_at !== undefined && decision !== 'session' && !scope.session) rule.expires_at = scope.expires_at;
  return rule;
}

/** The scope as words, for the audit log's reason and the CLI: "api.github.com:443 for /usr/bin/curl until …". */
export function describeRule(rule: OverlayRule, session = false): string {
  const target = `${rule.host}:${rule.port === 'any' ? 'any port' : String(rule.port)}`;
  const who = rule.binary ? ` for ${rule.binary}` : ' for any binary';
  const lasts = rule.expires_at ? ` until ${rule.expires_at}` : session ? ' until restart' : '';
  return `${target}${who}${lasts}`;
}

/** Event fields naming exactly what the rule written for a decision covers. */
export function ruleFields(rule: OverlayRule | undefined, session: boolean): Record<string, unknown> {
  if (!rule) return {};
  return {
    binary_scope: rule.binary ? 'binary' : 'any',
    rule_binary: rule.binary ?? null,
    rule_host: rule.host,
    rule_port: rule.port,
    rule_expires_at: rule.expires_at ?? null,
    rule_lasts: rule.expires_at ? 'timed' : session ? 'restart' : 'always',
  };
}

/** Read `scope` of a POST /v1/pending/:id body (invalid_input naming the field). */
export function parseGrantScope(raw: unknown): GrantScope {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new NemoclawError('invalid_input', 'scope must be an object', { nextStep: 'send {"scope": {"binary": "this", "host": "exact"}}', exitCode: 2 });
  const s = raw as Record<string, unknown>;
  const out: GrantScope = {};
  if (s.binary !== undefined) {
    if (!BINARY_SCOPES.includes(s.binary as BinaryScope)) throw new NemoclawError('invalid_input', 'scope.binary must be this or any', { exitCode: 2 });
    out.binary = s.binary as BinaryScope;
  }
  if (s.host !== undefined) {
    if (!HOST_SCOPES.includes(s.host as HostScope)) throw new NemoclawError('invalid_input', 'scope.host must be exact, any_port or domain', { exitCode: 2 });
    out.host = s.host as HostScope;
  }
  if (s.expires_at !== undefined) {
    if (typeof s.expires_at !== 'string' || !Number.isFinite(Date.parse(s.expires_at))) throw new NemoclawError('invalid_input', 'scope.expires_at must be an ISO time', { exitCode: 2 });
    out.expires_at = new Date(Date.parse(s.expires_at)).toISOString();
  }
  if (s.session !== undefined) out.session = s.session === true;
  return out;
}
