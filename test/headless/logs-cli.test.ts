import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/events.js';
import { Supervisor } from '../../src/control/supervisor.js';
import { BIN, MINIMAL_POLICY, runCli, spawnCli, startTestSupervisor } from '../helpers/supervisor.js';

describe('nemoclaw-tui logs (real bin against a supervisor)', () => {
  it('prints syslog priorities without timestamps under JOURNAL_STREAM, and the exact schema with --output jsonl', async () => {
    const t = await startTestSupervisor();
    try {
      t.supervisor.events.emit({ kind: 'fs.violation', level: 'warn', op: 'open', path: '/etc/shadow', binary: '/bin/cat' });
      const journal = await runCli(['logs', '--kind', 'fs.violation'], { home: t.home, env: { JOURNAL_STREAM: '8:1234' } });
      expect(journal.code).toBe(0);
      expect(journal.stdout).toBe('<4>fs.violation DENIED cat open /etc/shadow\n');

      const jsonl = await runCli(['logs', '--output', 'jsonl', '-n', '1'], { home: t.home });
      const [only] = await t.client.events({ n: 1 });
      expect(jsonl.stdout).toBe(`${JSON.stringify(only)}\n`);

      const since = await runCli(['logs', '--since', '1h', '--kind', 'policy.revision'], { home: t.home });
      expect(since.stdout).toMatch(/^\S+Z policy\.revision revision 1 /);
      const bad = await runCli(['logs', '--since', 'yesterday'], { home: t.home });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('--since expects a duration like 30s, 10m, 1h, 2d or an ISO time');
    } finally {
      await t.stop();
    }
  });

  it('text output leaves out the per-second samples (--samples brings them back) and --level filters (issue 16)', async () => {
    const t = await startTestSupervisor();
    try {
      t.supervisor.events.emit({ kind: 'net.held', level: 'notice', host: 'pypi.org', port: 443, pending_id: 'p-1' });
      for (let i = 0; i < 30; i++) t.supervisor.events.emit({ kind: 'proc.sample', level: 'debug', cpu: i });
      t.supervisor.events.emit({ kind: 'fs.violation', level: 'warn', op: 'open', path: '/etc/shadow', binary: '/bin/cat' });
      t.supervisor.events.emit({ kind: 'agent.log', level: 'info', line: 'hello' });
      // The last 10 events of the backlog are real ones, not 10 samples.
      const text = await runCli(['logs', '-n', '10'], { home: t.home });
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).not.toContain('proc.sample');
      expect(text.stdout).toContain('net.held');
      expect(text.stdout).toContain('fs.violation');
      const withSamples = await runCli(['logs', '-n', '10', '--samples'], { home: t.home });
      expect(withSamples.stdout).toContain('proc.sample');
      const jsonl = await runCli(['logs', '-n', '3', '--output', 'jsonl'], { home: t.home });
      expect(jsonl.stdout.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as AuditEvent).kind)).toContain('proc.sample');
      const warn = await runCli(['logs', '--level', 'warn'], { home: t.home });
      expect(warn.stdout.trim().split('\n').every((l) => /fs\.violation/.test(l))).toBe(true);
      const notice = await runCli(['logs', '--level', 'notice'], { home: t.home });
      expect(notice.stdout).toContain('net.held');
      expect(notice.stdout).not.toContain('agent.log');
      const bad = await runCli(['logs', '--level', 'loud'], { home: t.home });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('--level must be one of debug, info, notice, warn, error');
    } finally {
      await t.stop();
    }
  });

  it('exits 0 without a word when its reader goes away (| head)', async () => {
    const t = await startTestSupervisor();
    try {
      for (let i = 0; i < 2_000; i++) t.supervisor.events.emit({ kind: 'agent.log', line: `line ${i} ${'x'.repeat(100)}` });
      const child = execa(process.execPath, [BIN, 'logs'], {
        env: { ...process.env, NEMOCLAW_HOME: t.home, NO_COLOR: '1' },
        reject: false,
        buffer: { stdout: false, stderr: true },
      });
      child.stdout!.once('data', () => child.stdout!.destroy());
      const res = await child;
      expect(res.stderr).toBe('');
      expect(res.exitCode).toBe(0);
    } finally {
      await t.stop();
    }
  });

  it('logs -f reconnects when the supervisor restarts and resumes after the last seq, saying so on stderr', async () => {
    const t = await startTestSupervisor();
    const home = t.home;
    let second: Supervisor | undefined;
    const follower = spawnCli(['logs', '-f', '--output', 'jsonl', '--kind', 'agent.log'], { home });
    try {
      t.supervisor.events.emit({ kind: 'agent.log', line: 'one' });
      await follower.waitForLine((l) => l.includes('"one"'));
      await t.supervisor.stop('restart');
      await follower.waitForLine((l) => l.includes('reconnecting'), 15_000, 'stderr');
      second = await Supervisor.start({ name: 'default', home, policyText: MINIMAL_POLICY, services: [], log: () => undefined });
      second.events.emit({ kind: 'agent.log', line: 'two' });
      await follower.waitForLine((l) => l.includes('"two"'), 15_000);
      await follower.waitForLine((l) => /resuming after seq \d+/.test(l), 5_000, 'stderr');
      const lines = follower.stdoutLines.map((l) => JSON.parse(l) as AuditEvent);
      expect(lines.map((e) => e.line)).toEqual(['one', 'two']);
    } finally {
      const res = await follower.kill();
      expect(res.code).toBe(0);
      await second?.stop();
      await t.stop();
    }
  });
});
