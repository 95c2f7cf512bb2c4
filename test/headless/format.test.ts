import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/events.js';
import { ControlClient } from '../../src/control/client.js';
import { formatEvent, isJournal, shouldColor } from '../../src/headless/format.js';
import { runLogs } from '../../src/headless/follow.js';
import { startTestSupervisor } from '../helpers/supervisor.js';

function event(kind: AuditEvent['kind'], fields: Record<string, unknown>, level: AuditEvent['level'] = 'info'): AuditEvent {
  return {
    ts: '2026-11-22T10:00:00.123Z',
    seq: 7,
    kind,
    level,
    sandbox: 'default',
    id: 'r-1',
    ocsf_class: 4001,
    ...fields,
    prev_hash: 'a'.repeat(64),
    hash: 'b'.repeat(64),
  };
}

const plain = { color: false, journal: false };

describe('text format of events', () => {
  it('prints net.decision as "ts kind VERDICT binary -> host:port rule=…" with remaining fields after', () => {
    const line = formatEvent(
      event('net.decision', { verdict: 'deny', binary: '/usr/bin/node', host: 'evil.example', port: 443, reason: 'no rule matches' }, 'notice'),
      plain,
    );
    expect(line).toBe('2026-11-22T10:00:00.123Z net.decision DENY node -> evil.example:443 rule=- reason="no rule matches"');
  });

  it('falls back to key=value for kinds and fields it does not know, quoting where needed', () => {
    const line = formatEvent(event('gpu.sample', { util: 93, name: 'H100 80GB', nested: { a: 1 } }, 'warn'), plain);
    expect(line).toBe('2026-11-22T10:00:00.123Z gpu.sample WARN util=93 name="H100 80GB" nested="{\\"a\\":1}"');
  });

  it('with JOURNAL_STREAM: syslog priority prefix from the level and no timestamp of ours', () => {
    expect(isJournal({ JOURNAL_STREAM: '8:12345' })).toBe(true);
    expect(isJournal({})).toBe(false);
    const j = { color: false, journal: true };
    expect(formatEvent(event('agent.log', { line: 'hi' }), j)).toBe('<6>agent.log hi');
    expect(formatEvent(event('fs.violation', { op: 'open', path: '/etc/shadow', binary: '/bin/cat' }, 'warn'), j)).toBe(
      '<4>fs.violation DENIED cat open /etc/shadow',
    );
    expect(formatEvent(event('sandbox.lifecycle', { action: 'crash' }, 'error'), j)).toMatch(/^<3>/);
    expect(formatEvent(event('policy.revision', { number: 2, sha256: 'c'.repeat(64), author: 'cli', diff: '---' }, 'notice'), j)).toBe(
      '<5>policy.revision revision 2 sha256=cccccccccccc by cli',
    );
  });

  it('colours only on a TTY and never with NO_COLOR', () => {
    expect(shouldColor({ isTTY: true }, {})).toBe(true);
    expect(shouldColor({ isTTY: false }, {})).toBe(false);
    expect(shouldColor({}, {})).toBe(false);
    expect(shouldColor({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    // An empty NO_COLOR does not count (no-color.org).
    expect(shouldColor({ isTTY: true }, { NO_COLOR: '' })).toBe(true);
    const e = event('net.decision', { verdict: 'allow', host: 'a.example', port: 443 });
    expect(formatEvent(e, { color: true, journal: false })).toContain('\x1b[32mALLOW\x1b[0m');
    expect(formatEvent(e, plain)).not.toContain('\x1b[');
  });
});

/** A stdout whose reader went away: every write fails with EPIPE (asynchronously, like a pipe). */
class ClosedPipe extends EventEmitter {
  writes = 0;
  write(_chunk: string): boolean {
    this.writes++;
    setImmediate(() => this.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })));
    return false;
  }
}

describe('runLogs', () => {
  it('stops following and exits 0 quietly when stdout is a closed pipe', async () => {
    const t = await startTestSupervisor();
    try {
      const stdout = new ClosedPipe();
      const stderr: string[] = [];
      const following = runLogs({
        client: t.client,
        stdout,
        stderr: { write: (s: string) => (stderr.push(s), true) },
        env: {},
        follow: true,
        output: 'jsonl',
      });
      t.supervisor.events.emit({ kind: 'agent.log', line: 'x' });
      await expect(following).resolves.toBe(0);
      expect(stdout.writes).toBeGreaterThan(0);
      expect(stderr).toEqual([]);
    } finally {
      await t.stop();
    }
  });

  it('throws not_running when no supervisor answers', async () => {
    const client = new ControlClient({ socketPath: '/tmp/nct-does-not-exist.sock', sandbox: 'default' });
    await expect(
      runLogs({ client, stdout: { write: () => true }, stderr: { write: () => true }, env: {}, follow: true, output: 'text' }),
    ).rejects.toMatchObject({ code: 'not_running', nextStep: 'start it with `nemoclaw-tui up`' });
  });
});
