/**
 * The kill switch (issue 16). `quarantine` stops the agent, refuses all egress and inference (the
 * refusal says the sandbox is quarantined and why), and keeps the workdir untouched as evidence;
 * the reason goes to the audit log. The state is a file in the sandbox's state dir, so it holds
 * across supervisor restarts: the agent service does not start the agent, `up` refuses, until
 * `quarantine release`.
 *
 * A release (or a quarantine) made while no supervisor runs is written to the state dir and
 * recorded in the audit log by the next supervisor that starts (it has the only writer of the log).
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ControlRoute, SupervisorContext, SupervisorService } from './types.js';
import { NemoclawError } from '../shared/errors.js';
import { writeFileAtomicSync } from '../shared/fs.js';
import { nameFlag, type SandboxPaths } from '../shared/home.js';
import { cleanDecisionReason } from '../egress/pending.js';

export const QUARANTINE_SERVICE_NAME = 'quarantine';

export interface QuarantineState {
  reason: string;
  /** ISO time it began. */
  since: string;
  by: 'cli' | 'tui';
  /** Written by the CLI while no supervisor ran (recorded in the audit log at the next start). */
  offline?: boolean;
}

/** A release made while no supervisor ran, waiting to be recorded in the audit log. */
interface OfflineRelease extends QuarantineState {
  released_at: string;
  release_reason?: string;
}

export function quarantineFile(paths: Pick<SandboxPaths, 'dir'>): string {
  return join(paths.dir, 'quarantine.json');
}

function offlineReleaseFile(paths: Pick<SandboxPaths, 'dir'>): string {
  return join(paths.dir, 'quarantine-released.json');
}

/** The quarantine in force for this sandbox, or undefined. A file that cannot be read counts as in force (fail closed). */
export function readQuarantine(paths: Pick<SandboxPaths, 'dir'>): QuarantineState | undefined {
  const file = quarantineFile(paths);
  if (!existsSync(file)) return undefined;
  try {
    const s = JSON.parse(readFileSync(file, 'utf8')) as Partial<QuarantineState>;
    return {
      reason: typeof s.reason === 'string' ? s.reason : 'no reason given',
      since: typeof s.since === 'string' ? s.since : new Date(0).toISOString(),
      by: s.by === 'tui' ? 'tui' : 'cli',
      ...(s.offline ? { offline: true } : {}),
    };
  } catch {
    return { reason: `${file} is unreadable; treated as quarantined`, since: new Date(0).toISOString(), by: 'cli' };
  }
}

export function quarantinedMessage(q: QuarantineState): string {
  return `the sandbox is quarantined since ${q.since} (${q.reason}): all egress and inference are refused until an operator runs \`nemoclaw-tui quarantine release\``;
}

/** The error `up` (and anything else that would start the agent) gives while quarantined. */
export function quarantinedError(name: string, q: QuarantineState): NemoclawError {
  return new NemoclawError('conflict', `sandbox "${name}" is quarantined since ${q.since} (${q.reason}); the agent may not start`, {
    nextStep: `inspect the workdir and the audit log (\`nemoclaw-tui audit verify${nameFlag(name)}\`), then lift it with \`nemoclaw-tui quarantine release${nameFlag(name)}\``,
    exitCode: 1,
    details: q,
  });
}

/** Quarantine with no supervisor running: only the state file (the next start records it). */
export function quarantineOffline(paths: Pick<SandboxPaths, 'dir'>, reason: string, now: number): QuarantineState {
  const existing = readQuarantine(paths);
  if (existing) return existing;
  const q: QuarantineState = { reason, since: new Date(now).toISOString(), by: 'cli', offline: true };
  writeFileAtomicSync(quarantineFile(paths), `${JSON.stringify(q, null, 2)}\n`, 0o600);
  return q;
}

/** Release with no supervisor running: the state file goes, a note stays for the audit log. */
export function releaseOffline(paths: Pick<SandboxPaths, 'dir'>, now: number, reason?: string): QuarantineState | undefined {
  const q = readQuarantine(paths);
  if (!q) return undefined;
  const note: OfflineRelease = { ...q, released_at: new Date(now).toISOString(), ...(reason ? { release_reason: reason } : {}) };
  writeFileAtomicSync(offlineReleaseFile(paths), `${JSON.stringify(note, null, 2)}\n`, 0o600);
  rmSync(quarantineFile(paths), { force: true });
  return q;
}

/** What the egress proxy asks before anything else: a refusal reason while quarantined. */
export interface QuarantineGate {
  refusal(): string | undefined;
}

export interface QuarantineService extends SupervisorService, QuarantineGate {
  readonly name: 'quarantine';
  state(): QuarantineState | undefined;
  enter(reason: string, by: 'cli' | 'tui'): Promise<QuarantineState>;
  release(by: 'cli' | 'tui', reason?: string): Promise<QuarantineState | undefined>;
}

export function createQuarantineService(): QuarantineService {
  let ctx: SupervisorContext | undefined;
  let current: QuarantineState | undefined;

  const requireCtx = (): SupervisorContext => {
    if (!ctx) throw new NemoclawError('not_running', 'the quarantine service is not running', { nextStep: 'check `nemoclaw-tui status`' });
    return ctx;
  };

  const service: QuarantineService = {
    name: 'quarantine',
    state: () => current,
    refusal: () => (current ? quarantinedMessage(current) : undefined),

    async start(c) {
      ctx = c;
      const released = offlineReleaseFile(c.paths);
      if (existsSync(released)) {
        try {
          const note = JSON.parse(readFileSync(released, 'utf8')) as OfflineRelease;
          c.events.emit({ kind: 'sandbox.lifecycle', level: 'notice', action: 'quarantine.released', by: 'cli', offline: true, reason: note.reason, since: note.since, released_at: note.released_at, release_reason: note.release_reason ?? null });
          await c.events.durable();
          rmSync(released, { force: true });
        } catch {
          // Kept for the next start when the log could not take it.
        }
      }
      current = readQuarantine(c.paths);
      if (current) {
        c.events.emit({ kind: 'sandbox.lifecycle', level: 'warn', action: 'quarantine.in_force', reason: current.reason, since: current.since, by: current.by, ...(current.offline ? { offline: true } : {}) });
        // Before the egress proxy starts (this service is first): nothing gets out from the first request.
        await c.policy.setQuarantine(quarantinedMessage(current), 'startup', `quarantine in force since ${current.since}: ${current.reason}`);
      }
    },

    async stop() {
      ctx = undefined;
    },

    async enter(reasonIn, by) {
      const c = requireCtx();
      if (current) return current;
      const reason = cleanDecisionReason(reasonIn) ?? 'no reason given';
      const q: QuarantineState = { reason, since: new Date(c.clock.now()).toISOString(), by };
      // Persisted first: a crash from here on still comes back quarantined.
      writeFileAtomicSync(quarantineFile(c.paths), `${JSON.stringify(q, null, 2)}\n`, 0o600);
      current = q;
      c.events.emit({ kind: 'sandbox.lifecycle', level: 'warn', action: 'quarantine', reason, by, since: q.since, workdir: c.paths.workdir });
      // Refuse egress at once: a deny-all revision, which the proxy applies to held requests and
      // open connections too (the privacy router asks refusal() per call); then stop the agent.
      await c.policy.setQuarantine(quarantinedMessage(q), by, `quarantine: ${reason}`);
      await c.service('agent')?.stop();
      c.events.emit({ kind: 'sandbox.lifecycle', level: 'notice', action: 'quarantine.agent_stopped', reason, workdir_kept: c.paths.workdir });
      await c.events.durable().catch(() => undefined);
      return q;
    },

    async release(by, reasonIn) {
      const c = requireCtx();
      const q = current ?? readQuarantine(c.paths);
      if (!q) return undefined;
      const reason = cleanDecisionReason(reasonIn);
      await c.policy.setQuarantine(undefined, by, `quarantine released${reason ? `: ${reason}` : ''}`);
      rmSync(quarantineFile(c.paths), { force: true });
      current = undefined;
      c.events.emit({ kind: 'sandbox.lifecycle', level: 'notice', action: 'quarantine.released', by, reason: q.reason, since: q.since, ...(reason ? { release_reason: reason } : {}) });
      await c.events.durable().catch(() => undefined);
      return q;
    },

    status() {
      return current ? { quarantined: true, reason: current.reason, since: current.since, by: current.by } : { quarantined: false };
    },

    routes(): ControlRoute[] {
      return [
        { method: 'GET', path: '/v1/quarantine', handler: () => ({ status: 200, body: service.status!() }) },
        {
          method: 'POST',
          path: '/v1/quarantine',
          handler: async (req) => {
            const body = (req.body ?? {}) as { reason?: unknown; by?: unknown };
            if (body.reason !== undefined && typeof body.reason !== 'string') {
              throw new NemoclawError('invalid_input', 'reason must be a string', { nextStep: 'send {"reason": "short text"}', exitCode: 2 });
            }
            const already = current !== undefined;
            const q = await service.enter(body.reason ?? '', body.by === 'tui' ? 'tui' : 'cli');
            return { status: 200, body: { quarantined: true, already, ...q } };
          },
        },
        {
          method: 'DELETE',
          path: '/v1/quarantine',
          handler: async (req) => {
            const by = req.query.get('by') === 'tui' ? 'tui' : 'cli';
            const q = await service.release(by, req.query.get('reason') ?? undefined);
            if (!q) throw new NemoclawError('not_found', 'the sandbox is not quarantined', { nextStep: 'nothing to release', exitCode: 1 });
            return { status: 200, body: { released: true, ...q } };
          },
        },
      ];
    },
  };
  return service;
}
