/**
 * A root supervisor loop-mounts the workdir image (src/sandbox/workdir-disk.ts) and unmounts it at
 * `down`; a test that kills its supervisor (or never calls `down`) leaves the mount behind. Cleanup
 * detaches every mount below a temp home first, so `rm -rf` never walks into a mounted image.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export function mountsBelow(dir: string): string[] {
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const points = text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))))
    .filter((p) => p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

export function unmountBelow(dir: string): void {
  for (const p of mountsBelow(dir)) {
    try {
      execFileSync('umount', ['-l', p], { stdio: 'ignore' });
    } catch {
      /* not ours to force; rm reports what is left */
    }
  }
}
