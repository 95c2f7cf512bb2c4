/** `nemoclaw-tui blueprint sign | verify | list` through the real bin (needs `npx tsc -p .` first, as `npm test` does). */
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'nemoclaw-tui.js');
const work = mkdtempSync(join(tmpdir(), 'nemoclaw-bp-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const cli = (args: string[], home: string) =>
  execa(process.execPath, [BIN, ...args], { env: { ...process.env, NEMOCLAW_HOME: home }, reject: false });

describe('blueprint CLI', () => {
  it('signs, verifies against trusted keys, and refuses a tampered file with exit 1', async () => {
    const home = join(work, 'home');
    const dir = join(work, 'bp');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'blueprint.yaml'), 'name: demo\nversion: 0.1.0\n');
    writeFileSync(join(dir, 'start.sh'), 'echo hi\n');
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const keyFile = join(work, 'key.pem');
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));

    const signed = await cli(['blueprint', 'sign', dir, '--key', keyFile], home);
    expect(signed.exitCode, signed.stderr).toBe(0);
    expect(signed.stdout).toMatch(/signed .*: digest sha256:[0-9a-f]{64}, key [0-9a-f]{16}/);

    const untrusted = await cli(['blueprint', 'verify', dir], home);
    expect(untrusted.exitCode).toBe(1);
    expect(untrusted.stderr).toContain('which is not trusted');

    mkdirSync(join(home, 'trusted-keys'), { recursive: true });
    writeFileSync(join(home, 'trusted-keys', 'release.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    const ok = await cli(['blueprint', 'verify', dir, '--json'], home);
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ name: 'demo', version: '0.1.0', files: 2, signature: { state: 'trusted' } });

    writeFileSync(join(dir, 'start.sh'), 'echo pwned\n');
    const tampered = await cli(['blueprint', 'verify', dir], home);
    expect(tampered.exitCode).toBe(1);
    expect(tampered.stderr).toContain('file "start.sh" does not match its MANIFEST entry');

    const list = await cli(['blueprint', 'list', '--json'], home);
    expect(list.exitCode, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual([]);
  });
});
