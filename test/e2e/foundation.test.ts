/**
 * Issue 2's end-to-end check: the real bin starts a detached supervisor with `up`, another process
 * follows `logs -f --output jsonl`, `policy set --wait` applies a new policy, the follower sees the
 * `policy.revision` event, `down` stops the supervisor, and `audit verify` passes.
 */
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/events.js';
import { sandboxPaths } from '../../src/shared/home.js';
import { makeTempHome, readAuditRecords, runCli, spawnCli, writeTempFile } from '../helpers/supervisor.js';

const BASE = `version: 1
network_policies:
  github:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: api.github.com
        port: 443
`;

const NEXT = `${BASE}  npm:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: registry.npmjs.org
        port: 443
`;

describe('foundation end to end', () => {
  it('up, logs -f, policy set --wait, the revision event arrives, down, audit verify', async () => {
    const home = await makeTempHome();
    const base = await writeTempFile(home.dir, 'base.yaml', BASE);
    const next = await writeTempFile(home.dir, 'next.yaml', NEXT);
    const follower = spawnCli(['logs', '-f', '--output', 'jsonl'], { home: home.dir });
    try {
      // Before `up`, a follower fails at once with what to do, rather than waiting silently.
      const early = await follower.exited;
      expect(early.code).toBe(1);
      expect(early.stderr).toContain('next step: start it with `nemoclaw-tui up`');

      const up = await runCli(['up', '--policy', base], { home: home.dir });
      expect(up.code, up.stderr).toBe(0);
      expect(up.stdout).toContain('started the supervisor of sandbox "default"');

      const live = spawnCli(['logs', '-f', '--output', 'jsonl'], { home: home.dir });
      try {
        await live.waitForLine((l) => l.includes('"supervisor.start"'));

        const set = await runCli(['policy', 'set', next, '--wait'], { home: home.dir });
        expect(set.code, set.stderr).toBe(0);
        expect(set.stdout).toMatch(/applied policy revision 2 .*the revision event is on the stream/);

        const line = await live.waitForLine((l) => l.includes('"policy.revision"') && l.includes('"number":2'));
        const event = JSON.parse(line) as AuditEvent;
        expect(event).toMatchObject({ kind: 'policy.revision', sandbox: 'default', number: 2, author: 'cli' });
        expect(event.hash).toMatch(/^[0-9a-f]{64}$/);
        expect(String(event.diff)).toMatch(/^\+.*registry\.npmjs\.org/m);

        const show = await runCli(['policy', 'show'], { home: home.dir });
        expect(show.stdout).toContain('registry.npmjs.org');
        const history = await runCli(['policy', 'history', '--json'], { home: home.dir });
        expect((JSON.parse(history.stdout) as Array<{ number: number; author: string }>).map((r) => [r.number, r.author])).toEqual([
          [1, 'startup'],
          [2, 'cli'],
        ]);
      } finally {
        const res = await live.kill();
        expect(res.code).toBe(0);
      }

      const down = await runCli(['down'], { home: home.dir });
      expect(down.code, down.stderr).toBe(0);
      expect(down.stdout).toMatch(/stopped the supervisor of sandbox "default" \(pid \d+\)\n$/);

      const verify = await runCli(['audit', 'verify'], { home: home.dir });
      expect(verify.code, verify.stderr).toBe(0);
      // Every record on disk was checked, among them ours (services may add their own).
      const records = readAuditRecords(sandboxPaths('default', home.dir).auditDir);
      expect(verify.stdout).toMatch(new RegExp(`^audit log ok: ${records.length} records checked in 1 file `));
      const ours = records
        .filter((r) => r.kind === 'policy.revision' || r.kind === 'sandbox.lifecycle')
        .map((r) => (r.kind === 'policy.revision' ? `revision ${String(r.number)}` : String(r.action)));
      expect(ours).toEqual(['revision 1', 'supervisor.start', 'revision 2', 'supervisor.stop']);
    } finally {
      await follower.kill();
      await runCli(['down'], { home: home.dir });
      await home.cleanup();
    }
  });
});
