/**
 * The operator's rules on the control API: `GET /v1/rules` lists the overlay (always and
 * time-boxed) and session rules, `DELETE /v1/rules/:id` removes one as a new policy revision.
 * The supervisor adds these to its built-in routes (they need only the policy store).
 */
import type { ControlRoute, PolicyStore } from './types.js';
import { cleanDecisionReason } from '../egress/pending.js';
import { NemoclawError, previewJson } from '../shared/errors.js';

export function rulesRoutes(policy: PolicyStore): ControlRoute[] {
  return [
    { method: 'GET', path: '/v1/rules', handler: () => ({ status: 200, body: { rules: policy.rules(), revision: policy.revision().number } }) },
    {
      method: 'DELETE',
      path: '/v1/rules/:id',
      handler: async (req) => {
        const id = req.params.id ?? '';
        // Rule ids are short and printable (`r-1a2b3c4d`); anything else names nothing.
        if (!/^[rs]-[0-9a-f]{1,64}$/.test(id)) {
          throw new NemoclawError('not_found', `no operator rule ${previewJson(id, 40)}`, { nextStep: 'list the rules with `nemoclaw-tui rules list`', exitCode: 2 });
        }
        const by = req.query.get('by') === 'tui' ? 'tui' : 'cli';
        const reason = cleanDecisionReason(req.query.get('reason') ?? undefined);
        const result = await policy.removeRule(id, by, reason);
        return { status: 200, body: result };
      },
    },
  ];
}
