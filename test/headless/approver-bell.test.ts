/**
 * `logs -f --approver` rings the terminal bell for each new held request (issue 16): live holds
 * only (not the backlog, not a request that joins a held one), text output on a terminal only.
 */
import { describe, expect, it } from 'vitest';
import { runLogs } from '../../src/headless/index.js';
import { startTestSupervisor } from '../helpers/supervisor.js';

function tty() {
  const chunks: string[] = [];
  return { chunks, out: { isTTY: true, write: (s: string) => (chunks.push(s), true) } };
}

async function until(ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

describe('logs -f --approver', () => {
  it('rings once per new hold on a terminal; not for the backlog, joins, jsonl or without --approver', async () => {
    const t = await startTestSupervisor();
    try {
      t.supervisor.events.emit({ kind: 'net.held', pending_id: 'p-old', joined: false, host: 'old.test', port: 443 });
      const runs = [
        { name: 'approver', ...tty(), approver: true, output: 'text' as const },
        { name: 'jsonl', ...tty(), approver: true, output: 'jsonl' as const },
        { name: 'watcher', ...tty(), approver: false, output: 'text' as const },
      ];
      const ac = new AbortController();
      const following = runs.map((r) =>
        runLogs({ client: t.client, stdout: r.out, stderr: { write: () => true }, env: { NO_COLOR: '1' }, follow: true, output: r.output, approver: r.approver, signal: ac.signal }),
      );
      await until(() => runs.every((r) => r.chunks.some((c) => c.includes('old.test'))));
      await new Promise((r) => setTimeout(r, 200));
      t.supervisor.events.emit({ kind: 'net.held', pending_id: 'p-1', joined: false, host: 'new.test', port: 443 });
      t.supervisor.events.emit({ kind: 'net.held', pending_id: 'p-1', joined: true, host: 'new.test', port: 443 });
      t.supervisor.events.emit({ kind: 'agent.log', line: 'done' });
      await until(() => runs.every((r) => r.chunks.some((c) => c.includes('done'))));
      ac.abort();
      await Promise.all(following);
      const bells = (r: (typeof runs)[number]) => r.chunks.join('').split('\u0007').length - 1;
      expect(bells(runs[0]!)).toBe(1);
      expect(runs[0]!.chunks.find((c) => c.includes('\u0007'))).toContain('new.test');
      expect(bells(runs[1]!)).toBe(0);
      expect(bells(runs[2]!)).toBe(0);
    } finally {
      await t.stop();
    }
  });
});
