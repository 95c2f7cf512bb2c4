/**
 * `npm start` rebuilds only when an input of the build changed (issue 16: every start re-ran tsc,
 * 38-48 s to re-attach). Runs the real script and the real tsc on a tiny project in a temp dir.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/supervisor.js';

const dir = mkdtempSync(join(tmpdir(), 'nct-build-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function setup(): void {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  mkdirSync(join(dir, 'src'), { recursive: true });
  cpSync(join(REPO_ROOT, 'bin', 'build-if-stale.js'), join(dir, 'bin', 'build-if-stale.js'));
  // build-if-stale builds the Landlock helper first (bin/build-native.js, its C source).
  cpSync(join(REPO_ROOT, 'bin', 'build-native.js'), join(dir, 'bin', 'build-native.js'));
  mkdirSync(join(dir, 'src', 'sandbox', 'landlock'), { recursive: true });
  cpSync(join(REPO_ROOT, 'src', 'sandbox', 'landlock', 'nemoclaw-landlock.c'), join(dir, 'src', 'sandbox', 'landlock', 'nemoclaw-landlock.c'));
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}\n');
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { outDir: 'dist', rootDir: '.', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, types: [] }, include: ['src/**/*.ts'] }));
  writeFileSync(join(dir, 'src', 'a.ts'), 'export const a: number = 1;\n');
}

const run = (...args: string[]) => execa(process.execPath, [join(dir, 'bin', 'build-if-stale.js'), ...args], { reject: false });
const later = (path: string, seconds: number) => {
  const t = new Date(Date.now() + seconds * 1000);
  utimesSync(path, t, t);
};

describe('build-if-stale', () => {
  it('builds when there is no stamp, skips when nothing changed, rebuilds after an edit, keeps the stamp on a failed build', async () => {
    setup();
    const first = await run();
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stderr).toContain('building (tsc)');
    expect(existsSync(join(dir, 'dist', 'src', 'a.js'))).toBe(true);
    const stamp = join(dir, 'dist', '.build-stamp');
    expect(existsSync(stamp)).toBe(true);

    const again = await run();
    expect(again.exitCode).toBe(0);
    expect(again.stderr).toBe('');

    writeFileSync(join(dir, 'src', 'a.ts'), 'export const a: number = 2;\n');
    later(join(dir, 'src', 'a.ts'), 5);
    const edited = await run();
    expect(edited.stderr).toContain('building (tsc)');
    expect(edited.exitCode).toBe(0);

    const before = statSync(stamp).mtimeMs;
    writeFileSync(join(dir, 'src', 'b.ts'), 'export const b: number = "not a number";\n');
    later(join(dir, 'src', 'b.ts'), 10);
    const broken = await run();
    expect(broken.exitCode).not.toBe(0);
    expect(broken.stderr).toMatch(/the build failed .*npm run build/);
    expect(statSync(stamp).mtimeMs).toBe(before);
    // Still stale: the next start tries again rather than running an old build silently.
    expect((await run()).stderr).toContain('building (tsc)');

    rmSync(join(dir, 'src', 'b.ts'));
    expect((await run('--force')).exitCode).toBe(0);
  }, 120_000);
});
