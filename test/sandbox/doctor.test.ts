/**
 * `doctor` on this machine: it says whether a non-root supervisor (relay-inside mode) can start
 * sandboxes, from the user-namespace sysctls, and proves the root path with a real bwrap start.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { runDoctor } from '../../src/sandbox/doctor.js';

describe('doctor', () => {
  it('reports the relay-inside (non-root) mode with the user-namespace sysctls it depends on', async () => {
    const report = await runDoctor();
    const relay = report.checks.find((c) => c.id === 'relay-inside');
    expect(relay, 'no relay-inside check').toBeDefined();
    const maxNs = Number(readFileSync('/proc/sys/user/max_user_namespaces', 'utf8'));
    expect(relay!.detail).toContain(`user.max_user_namespaces=${maxNs}`);
    expect(relay!.ok).toBe(maxNs > 0);
    expect(relay!.detail).toMatch(maxNs > 0 ? /^yes: .*AF_UNIX stays allowed, no fs-violation monitor/ : /^no: /);
    // As root it only degrades what a non-root supervisor could do; the sandbox itself works.
    if (process.getuid?.() === 0) expect(relay!.severity).toBe('warn');
    expect(report.checks.find((c) => c.id === 'bwrap-start')?.ok).toBe(true);
  }, 30_000);

  it('starts a sandbox with the real seccomp program and reports each kernel layer it saw from inside', async () => {
    const report = await runDoctor();
    const layers = report.checks.find((c) => c.id === 'sandbox-layers');
    expect(layers, 'no sandbox-layers check').toBeDefined();
    expect(layers!.ok, layers!.detail).toBe(true);
    expect(layers!.detail).toMatch(/^seccomp mode 2 \(\d+ instructions\), no_new_privs 1, CapEff 0+, \/proc read-only, AF_VSOCK refused$/);
    expect(report.checks.find((c) => c.id === 'seccomp-kill-process')?.ok).toBe(true);
  }, 30_000);
});
