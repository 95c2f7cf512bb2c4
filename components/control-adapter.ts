/**
 * The real TuiClient: an adapter over the typed ControlClient (src/control/client.ts): held
 * requests through `pending()` / `decide(id, decision, 'tui')` (egress), the policy through
 * `getPolicy()` / `policyHistory()`, budgets through `budget()` / `setBudget()` (privacy router).
 */
import type { ControlClient } from '../src/control/client.js';
import type { BudgetCaps, BudgetScope } from '../src/inference/index.js';
import type { ApprovalDecision, DecisionScope, FollowHandlers, PolicyView, TuiClient } from './client.js';
import { budgetReading } from './selectors.js';

/** Events of the backlog shown on attach (re-attaching shows the history). */
export const ATTACH_BACKLOG = 500;

export function controlTuiClient(control: ControlClient): TuiClient {
  return {
    async status() {
      return (await control.status()) as unknown as Record<string, unknown>;
    },

    async pending() {
      const list: unknown = await control.pending();
      // Read defensively: an older or newer supervisor may answer with something else.
      return Array.isArray(list) ? (list.filter((p) => p && typeof p === 'object') as Record<string, unknown>[]) : [];
    },

    async decide(id: string, decision: ApprovalDecision, reason?: string, scope?: DecisionScope) {
      await control.decide(id, decision, 'tui', reason, scope);
    },

    async follow(handlers: FollowHandlers, signal: AbortSignal) {
      await control.followEvents(
        { n: ATTACH_BACKLOG, approver: true },
        (e) => handlers.onEvent(e),
        {
          signal,
          waitForSupervisor: true,
          onBacklogEnd: () => handlers.onOpen?.(),
          onResumed: () => handlers.onOpen?.(),
          onReconnecting: (info) => handlers.onLost?.(`${info.reason}; retrying in ${(info.delayMs / 1000).toFixed(1)} s`),
        },
      );
    },

    async policy(): Promise<PolicyView> {
      const [view, history] = await Promise.all([control.getPolicy(), control.policyHistory()]);
      return {
        revision: view.revision.number,
        yaml: view.yaml,
        history: history.map((r) => ({ number: r.number, time: r.time, author: r.author, reason: r.reason, sha256: r.sha256 })),
      };
    },

    async budget() {
      try {
        return (await control.budget()) as unknown as Record<string, unknown>;
      } catch {
        return undefined; // no privacy router in this supervisor
      }
    },

    async rules() {
      const list: unknown = await control.rules();
      return Array.isArray(list) ? (list.filter((r) => r && typeof r === 'object') as Record<string, unknown>[]) : [];
    },

    async removeRule(id: string) {
      const r = await control.removeRule(id, 'tui');
      const port = r.removed.port === 'any' ? '*' : String(r.removed.port);
      return `removed ${r.removed.id} (${r.removed.action} ${r.removed.host}:${port}); policy revision ${r.revision.number}`;
    },

    async quarantine(reason: string | undefined) {
      const r = await control.quarantine(reason, 'tui');
      return `${r.already ? 'already quarantined' : 'quarantined'}: agent stopped, egress and inference refused (release: nemoclaw-tui quarantine release)`;
    },

    async raiseBudget() {
      const snapshot = (await control.budget()) as unknown as Record<string, unknown>;
      const windows = budgetReading(snapshot).windows.filter((w) => w.tokensCap !== undefined || w.costCap !== undefined);
      if (windows.length === 0) return 'no budget cap is set; nothing to raise';
      // Raise the window closest to its cap by 50%.
      const ratio = (w: (typeof windows)[number]) =>
        Math.max(w.tokensCap ? (w.tokensUsed ?? 0) / w.tokensCap : 0, w.costCap ? (w.costUsed ?? 0) / w.costCap : 0);
      const target = [...windows].sort((a, b) => ratio(b) - ratio(a))[0]!;
      if (target.window !== 'hour' && target.window !== 'day') return `the supervisor reports a "${target.window}" budget the router cannot raise; use \`nemoclaw-tui budget\``;
      const caps: BudgetCaps = {};
      if (target.tokensCap !== undefined) caps.tokens = Math.ceil(target.tokensCap * 1.5);
      if (target.costCap !== undefined) caps.usd = Math.round(target.costCap * 1.5 * 100) / 100;
      await control.setBudget(target.window satisfies BudgetScope, caps);
      const parts = [caps.tokens !== undefined ? `${String(caps.tokens)} tokens` : '', caps.usd !== undefined ? `$${String(caps.usd)}` : ''].filter(Boolean);
      return `${target.window} budget raised to ${parts.join(' and ')}`;
    },
  };
}
