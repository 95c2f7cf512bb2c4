/** `policy validate|show|set|history`. */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { AuditEvent } from '../../audit/events.js';
import { loadPolicyFile, readPolicyFile } from '../../policy/index.js';
import type { PolicyRevision } from '../../policy/types.js';
import { NemoclawError, isNemoclawError } from '../../shared/errors.js';
import type { ControlClient } from '../../control/index.js';
import { EXIT, action, commandGroup, formatPolicyWarnings } from '../util.js';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import {
  DEFAULT_POLICY_PATH,
  FAIL_ON_VALUES,
  candidateOf,
  collectNetReplay,
  evaluateReplay,
  overlayRulesOf,
  parseOverlayText,
  parseRevisionYaml,
  readAuditEvents,
  revisionFromHistory,
  simulationFails,
  withOverlay,
  withoutOverlay,
  type FailOn,
  type NetReplay,
  type RecordedOverlayRule,
  type SimulationResult,
  type SimulationRow,
} from '../../policy/index.js';
import type { PolicyDocument } from '../../policy/types.js';
import type { CliContext } from '../util.js';
import type { CommandModule } from './index.js';

/** Does this policy.revision event announce revision `rev`? */
function announces(e: AuditEvent, rev: PolicyRevision): boolean {
  const nested = e.revision as { number?: unknown } | undefined;
  return (
    e.revision === rev.number ||
    e.number === rev.number ||
    (typeof nested === 'object' && nested !== null && nested.number === rev.number) ||
    (typeof e.sha256 === 'string' && e.sha256 === rev.sha256 && e.revision === undefined && e.number === undefined)
  );
}

/** Wait until the policy.revision event of `rev` is visible on the event stream. */
async function waitForRevisionEvent(client: ControlClient, afterSeq: number, rev: PolicyRevision, timeoutMs: number): Promise<AuditEvent> {
  const stop = new AbortController();
  let found: AuditEvent | undefined;
  const timer = setTimeout(() => stop.abort(), timeoutMs);
  try {
    await client.followEvents(
      { since: afterSeq, kinds: ['policy.revision'] },
      (e) => {
        if (!found && announces(e, rev)) {
          found = e;
          stop.abort();
        }
      },
      { signal: stop.signal },
    );
  } finally {
    clearTimeout(timer);
  }
  if (!found) {
    throw new NemoclawError('io', `revision ${rev.number} was applied but its policy.revision event did not appear on the event stream within ${timeoutMs} ms`, {
      nextStep: 'check `nemoclaw-tui logs --kind policy.revision`',
    });
  }
  return found;
}

export const policyCommands: CommandModule = {
  register(program: Command): void {
    const policy = commandGroup(program, 'policy', 'validate, show, change and list revisions of the sandbox policy');

    policy
      .command('validate')
      .description('check a policy file (exit 2 with file:line:col and what was expected)')
      .argument('<file>', 'policy YAML file')
      .option('--json', 'print {file, valid, network_policies, presets, warnings, errors} (each issue with line, col, path, message)')
      .action(
        action<[string, { json?: boolean }]>(async (ctx, file: string, opts) => {
          const path = resolve(file);
          if (opts.json) {
            // Scripts get every issue as data, valid or not; the exit code says which.
            try {
              const { doc, warnings } = await loadPolicyFile(path);
              ctx.json({ file, valid: true, network_policies: Object.keys(doc.network_policies).length, presets: doc.presets, warnings, errors: [] });
              return EXIT.ok;
            } catch (err) {
              if (!isNemoclawError(err) || err.code !== 'policy_invalid') throw err;
              ctx.json({ file, valid: false, warnings: [], errors: Array.isArray(err.details) ? err.details : [{ message: err.message }] });
              return EXIT.usage;
            }
          }
          const { doc, warnings } = await loadPolicyFile(path);
          if (warnings.length > 0) ctx.err(formatPolicyWarnings(warnings));
          const n = Object.keys(doc.network_policies).length;
          ctx.out(`${file}: valid (${n} network polic${n === 1 ? 'y' : 'ies'}${doc.presets.length > 0 ? `, presets: ${doc.presets.join(', ')}` : ''})`);
          return EXIT.ok;
        }),
      );

    policy
      .command('show')
      .description('print the effective policy of the running supervisor (canonical YAML)')
      .option('--json', 'print {yaml, revision} as JSON')
      .action(
        action(async (ctx, opts: { json?: boolean }) => {
          const view = await ctx.client().getPolicy();
          if (opts.json) ctx.json(view);
          else ctx.io.stdout.write(view.yaml.endsWith('\n') ? view.yaml : `${view.yaml}\n`);
          return EXIT.ok;
        }),
      );

    policy
      .command('set')
      .description('apply a new base policy to the running supervisor (static sections need a restart)')
      .argument('<file>', 'policy YAML file')
      .option('--wait', 'return once the policy.revision event is visible on the event stream')
      .option('--timeout <seconds>', 'with --wait: how long to wait', '15')
      .action(
        action(async (ctx, file: string, opts: { wait?: boolean; timeout: string }) => {
          const path = resolve(file);
          // Refused here, naming the file, before anything is sent (the API's body limit would say less).
          const text = await readPolicyFile(path);
          const client = ctx.client();
          const before = opts.wait ? (await client.status()).last_seq : 0;
          const res = await client.setPolicy(text, { author: 'cli', source: path });
          if (!res.changed) {
            ctx.out(`policy unchanged: ${file} matches revision ${res.revision.number}`);
            return EXIT.ok;
          }
          if (opts.wait) {
            const seconds = Number(opts.timeout);
            await waitForRevisionEvent(client, before, res.revision, Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 15_000);
          }
          ctx.out(`applied policy revision ${res.revision.number} (sha256 ${res.revision.sha256.slice(0, 12)})${opts.wait ? '; the revision event is on the stream' : ''}`);
          return EXIT.ok;
        }),
      );

    policy
      .command('history')
      .description('list the policy revisions of the running supervisor')
      .option('--json', 'print the revisions as JSON')
      .action(
        action(async (ctx, opts: { json?: boolean }) => {
          const revisions = await ctx.client().policyHistory();
          if (opts.json) {
            ctx.json(revisions);
            return EXIT.ok;
          }
          ctx.out(`${'REV'.padEnd(5)} ${'TIME'.padEnd(24)} ${'AUTHOR'.padEnd(9)} ${'SHA256'.padEnd(12)} REASON`);
          for (const r of revisions) {
            ctx.out(`${String(r.number).padEnd(5)} ${r.time.padEnd(24)} ${r.author.padEnd(9)} ${r.sha256.slice(0, 12)} ${r.reason ?? ''}`.trimEnd());
          }
          return EXIT.ok;
        }),
      );

    policy
      .command('simulate')
      .description('replay the network requests recorded in an audit log against a candidate policy: old vs. new verdict per request')
      .option('--from-audit <path>', "audit directory or one audit-NNNNNN.jsonl[.gz] file (default: this sandbox's audit log)")
      .option('--policy <file>', 'candidate policy YAML (presets resolved); default: see below')
      .option('--no-overlay', 'leave out the operator overlay (the "always allow/deny" rules) — simulate the policy alone')
      .option('--fail-on <direction>', 'exit 1 when a request changes this way: tighten | widen | any | none', 'tighten')
      .option('--only-changed', 'list only requests whose verdict changes, in the table and in --json rows (the summary still counts all)')
      .option('--json', 'print one JSON document {audit, candidate, summary, rows, skipped, integrity, failed}')
      .addHelpText('after', SIMULATE_HELP)
      .action(
        action(async (ctx, opts: SimulateOpts) => runSimulate(ctx, opts)),
      );
  },
};

// ---------------------------------------------------------------------------------------------
// policy simulate

const SIMULATE_HELP = `
Verdicts: allow | deny | ask. "ask" = not in the policy: held for an operator (approvals.mode ask;
refused while no operator is attached under approvals.when_unattended: deny), refused under
approvals.mode deny. A recorded request that was held (approved or refused by a person,
timed out) or allowed by a session grant counts as "ask"; one allowed by an "always" rule counts as
"allow" (the overlay is part of the policy).

Candidate (without --policy), the first that exists:
  1. the newest policy revision recorded in the log (rebuilt from its diffs, or found by sha256 in
     the sandbox's policy-history.jsonl): "does the policy in force now still let through what the
     agent did earlier?"
  2. the running supervisor's policy (control API)
  3. the sandbox's policy file, else the packaged default policy
Overlay (default on): the operator's "always allow/deny" rules are merged on top of a --policy file,
as the supervisor merges them after \`policy set\`: the rules of this sandbox's overlay file when it
exists, else the "always" approvals recorded in the log. A recorded revision already contains them.
--no-overlay simulates the policy alone (e.g. before folding the overlay into the base file).

Exit codes:
  0  nothing changed in the direction --fail-on names (also: nothing to replay)
  1  --fail-on tighten (default): some request would be stricter than recorded (allow -> ask/deny,
     ask -> deny); widen: some would be looser; any: either; none: never 1
  2  usage error, audit log not found, candidate policy invalid (file:line:col)

Bad input does not stop the replay: a partial last line is ignored, records whose hash does not
match are skipped, a broken chain is reported (stderr; "integrity" in --json) and what can be read is
replayed. Requests to inference.local, tunnels refused for TLS/SSRF/identity reasons and requests
with no recorded decision are not replayed and are counted under "skipped". The log records paths
without their query and not the client's ancestors: rows decided by query matchers say "approximate".

Examples:
  nemoclaw-tui policy simulate --policy tighter.yaml
  nemoclaw-tui policy simulate --from-audit ./audit --policy tighter.yaml --only-changed
  nemoclaw-tui policy simulate --policy tighter.yaml --fail-on any --json > report.json
`;

interface SimulateOpts {
  fromAudit?: string;
  policy?: string;
  overlay: boolean;
  failOn: string;
  onlyChanged?: boolean;
  json?: boolean;
}

interface CandidateInfo {
  doc: PolicyDocument;
  /** file | revision | running | policy-file | default-policy */
  kind: string;
  source: string;
  revision?: number;
  sha256?: string;
  overlay: { included: boolean; source: string | null; rules: number };
}

async function readOverlayFile(file: string): Promise<RecordedOverlayRule[] | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new NemoclawError('io', `cannot read the operator overlay ${file}: ${(err as Error).message}`, { nextStep: 'check its permissions, or pass --no-overlay' });
  }
  return parseOverlayText(text, file);
}

/** A base policy file with the overlay on top (as `policy set` would run it). */
async function fileCandidate(ctx: CliContext, doc: PolicyDocument, kind: string, source: string, overlay: boolean, replay: NetReplay | undefined): Promise<CandidateInfo> {
  if (!overlay) return { doc: withoutOverlay(doc), kind, source, overlay: { included: false, source: null, rules: 0 } };
  const fromFile = await readOverlayFile(ctx.paths.overlayFile);
  const rules = fromFile ?? replay?.overlay ?? [];
  const overlaySource = fromFile ? ctx.paths.overlayFile : 'the "always" approvals in the log';
  return { doc: withOverlay(doc, rules), kind, source, overlay: { included: true, source: overlaySource, rules: rules.length } };
}

/** An effective policy (a recorded revision or the running one): the overlay is already in it. */
function effectiveCandidate(doc: PolicyDocument, kind: string, source: string, overlay: boolean, extra: { revision?: number; sha256?: string }): CandidateInfo {
  const rules = overlayRulesOf(doc).length;
  if (!overlay) return { doc: withoutOverlay(doc), kind, source, ...extra, overlay: { included: false, source: null, rules: 0 } };
  return { doc, kind, source, ...extra, overlay: { included: true, source: 'the revision', rules } };
}

async function defaultCandidate(ctx: CliContext, replay: NetReplay, overlay: boolean): Promise<CandidateInfo> {
  const latest = replay.revisions.at(-1);
  if (latest) {
    const yaml = latest.yaml ?? (await revisionFromHistory(ctx.paths.policyHistoryFile, latest.sha256));
    if (yaml !== undefined) {
      const doc = parseRevisionYaml(yaml, `policy revision ${latest.number}`);
      return effectiveCandidate(doc, 'revision', `policy revision ${latest.number} recorded in the log (seq ${latest.seq})`, overlay, { revision: latest.number, sha256: latest.sha256 });
    }
    ctx.err(`note: revision ${latest.number} (sha256 ${latest.sha256.slice(0, 12)}) is in the log but its text could not be rebuilt (the log does not start at the first revision, and ${ctx.paths.policyHistoryFile} does not have it)`);
  }
  try {
    const view = await ctx.client({ timeoutMs: 3_000 }).getPolicy();
    const doc = parseRevisionYaml(view.yaml, `running policy revision ${view.revision.number}`);
    return effectiveCandidate(doc, 'running', `the running supervisor's policy (revision ${view.revision.number})`, overlay, { revision: view.revision.number, sha256: view.revision.sha256 });
  } catch (err) {
    if (isNemoclawError(err) && err.code === 'policy_invalid') throw err;
    // not running: fall through to the files
  }
  const file = existsSync(ctx.paths.policyFile) ? ctx.paths.policyFile : DEFAULT_POLICY_PATH;
  const { doc } = await loadPolicyFile(file);
  return fileCandidate(ctx, doc, file === DEFAULT_POLICY_PATH ? 'default-policy' : 'policy-file', file, overlay, replay);
}

function cell(v: string | number | null, width: number): string {
  const s = v === null ? '-' : String(v);
  return s.length > width ? `${s.slice(0, width - 1)}…` : s.padEnd(width);
}

function printTable(ctx: CliContext, rows: SimulationRow[]): void {
  const w = {
    host: Math.min(40, Math.max(4, ...rows.map((r) => r.host.length))),
    binary: Math.min(28, Math.max(6, ...rows.map((r) => (r.binary ?? '-').length))),
    method: Math.max(6, ...rows.map((r) => (r.method ?? '-').length)),
    path: Math.min(36, Math.max(4, ...rows.map((r) => (r.path ?? '-').length))),
    count: Math.max(5, ...rows.map((r) => String(r.count).length)),
  };
  ctx.out(`${cell('HOST', w.host)} ${cell('PORT', 5)} ${cell('BINARY', w.binary)} ${cell('METHOD', w.method)} ${cell('PATH', w.path)} ${cell('COUNT', w.count)} ${cell('OLD -> NEW', 16)} RULE`);
  for (const r of rows) {
    const mark = r.change === 'tighten' ? ' !' : r.change === 'widen' ? ' +' : '';
    const verdicts = `${r.old} -> ${r.new}${mark}`;
    const rule = `${r.rule ?? '-'}${r.approximate ? ' (approximate)' : ''}`;
    ctx.out(`${cell(r.host, w.host)} ${cell(r.port, 5)} ${cell(r.binary, w.binary)} ${cell(r.method, w.method)} ${cell(r.path, w.path)} ${String(r.count).padStart(w.count)} ${cell(verdicts, 16)} ${rule}`.trimEnd());
  }
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

async function runSimulate(ctx: CliContext, opts: SimulateOpts): Promise<number> {
  const failOn = opts.failOn as FailOn;
  if (!FAIL_ON_VALUES.includes(failOn)) {
    throw new NemoclawError('invalid_input', `--fail-on expects one of ${FAIL_ON_VALUES.join(', ')}, got "${opts.failOn}"`, { exitCode: EXIT.usage });
  }
  // A candidate file is checked before a possibly long log is read.
  const given = opts.policy !== undefined ? await loadPolicyFile(resolve(opts.policy)) : undefined;
  const auditPath = opts.fromAudit !== undefined ? resolve(opts.fromAudit) : ctx.paths.auditDir;
  const { events, report } = readAuditEvents(auditPath);
  const replay = await collectNetReplay(events);
  const candidate = given
    ? await fileCandidate(ctx, given.doc, 'file', resolve(opts.policy!), opts.overlay, replay)
    : await defaultCandidate(ctx, replay, opts.overlay);
  const result: SimulationResult = evaluateReplay(replay, candidateOf(candidate.doc));
  const failed = simulationFails(result.summary, failOn);
  const shown = opts.onlyChanged ? result.rows.filter((r) => r.change !== 'unchanged') : result.rows;
  const s = result.summary;
  const integrity = { ok: report.ok, records: report.records, intact: report.intact, torn_tail: report.tornTail, files: report.files, problems: report.problems };
  if (opts.json) {
    ctx.json({
      audit: auditPath,
      candidate: { kind: candidate.kind, source: candidate.source, revision: candidate.revision ?? null, sha256: candidate.sha256 ?? null, approvals_mode: candidate.doc.approvals.mode, overlay: candidate.overlay },
      fail_on: failOn,
      failed,
      nothing_to_replay: s.requests === 0,
      summary: s,
      rows: shown,
      skipped: result.skipped,
      folded: result.folded,
      integrity,
    });
  }
  // Warnings go to stderr in both modes: a script reading --json still sees them in its log.
  if (!report.ok) {
    const skippedN = report.problems.filter((p) => p.skipped).length;
    ctx.err(`warning: the audit log's hash chain is broken (${plural(report.problems.length, 'problem')}; ${plural(skippedN, 'record')} not replayed); the results below come from what could be read:`);
    for (const p of report.problems.slice(0, 10)) ctx.err(`  ${p.file}${p.line !== undefined ? `:${p.line}` : ''}${p.seq !== undefined ? ` (seq ${p.seq})` : ''}: ${p.reason}`);
    if (report.problems.length > 10) ctx.err(`  … and ${report.problems.length - 10} more (--json lists them)`);
    ctx.err(`  next step: \`nemoclaw-tui audit verify ${auditPath}\`; keep a copy of the log for investigation`);
  }
  if (report.tornTail) ctx.err('note: the last audit file ends in a partial record (a crash while it was written); it was not replayed');
  if (result.skipped.length > 0 && !opts.json) {
    const n = result.skipped.reduce((a, g) => a + g.count, 0);
    ctx.err(`note: ${plural(n, 'net record')} not replayed:`);
    for (const g of result.skipped) ctx.err(`  ${g.count} × ${g.reason} (seq ${g.seqs.join(', ')}${g.count > g.seqs.length ? ', …' : ''})`);
  }
  if (opts.json) return failed ? EXIT.failure : EXIT.ok;

  const ov = candidate.overlay;
  ctx.out(`candidate: ${candidate.source}${ov.included ? ` + overlay (${plural(ov.rules, 'rule')} from ${ov.source})` : ' (without the overlay)'}; approvals.mode ${candidate.doc.approvals.mode}`);
  ctx.out(`audit log: ${auditPath} (${plural(report.records, 'record')}${report.ok ? ', chain intact' : ', chain BROKEN'})`);
  if (s.requests === 0) {
    ctx.out(`nothing to replay: the log has no network requests${result.skipped.length > 0 ? ' that a policy decides' : ''} (${plural(replay.events, 'record')} read)`);
    return EXIT.ok;
  }
  if (shown.length > 0) printTable(ctx, shown);
  else ctx.out('no request changes its verdict');
  if (result.folded) ctx.out('note: too many distinct paths; the rest were folded into "(other paths)" rows');
  ctx.out(
    `replayed ${plural(s.requests, 'request')} (${s.distinct} distinct): ${s.unchanged} unchanged, ${s.newly_refused} newly refused, ${s.newly_allowed} newly allowed, ${s.now_ask} would now ask`,
  );
  if (failed) {
    const what =
      failOn === 'widen'
        ? `${plural(s.widened_requests, 'request')} would be looser than recorded`
        : failOn === 'tighten'
          ? `${plural(s.tightened_requests, 'request')} would be stricter than recorded (marked !)`
          : `${plural(s.tightened_requests + s.widened_requests, 'request')} would change (marked ! stricter, + looser)`;
    ctx.err(`${what} (--fail-on ${failOn})`);
  }
  return failed ? EXIT.failure : EXIT.ok;
}
