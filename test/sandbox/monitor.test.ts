import { describe, expect, it } from 'vitest';
import { classifyViolation, parseStraceLine, splitArgs } from '../../src/sandbox/monitor.js';

const rules = { readOnly: ['/usr'], readWrite: ['/sandbox', '/tmp'], hidden: ['/sandbox/.ssh', '/etc/shadow'] };

function classify(line: string, cwd?: string) {
  const parsed = parseStraceLine(line);
  expect(parsed, line).toBeDefined();
  return classifyViolation({ parsed: parsed!, rules, cwdOf: () => cwd });
}

describe('fs-violation monitor parsing', () => {
  it('parses strace -f -Y -y lines with pid, command and decoded cwd', () => {
    const p = parseStraceLine('812<touch> openat(AT_FDCWD</sandbox>, "/x", O_WRONLY|O_CREAT|O_NOCTTY|O_NONBLOCK, 0666) = -1 EROFS (Read-only file system)');
    expect(p).toMatchObject({ pid: 812, comm: 'touch', syscall: 'openat', errno: 'EROFS' });
    expect(p!.args).toEqual(['AT_FDCWD</sandbox>', '"/x"', 'O_WRONLY|O_CREAT|O_NOCTTY|O_NONBLOCK', '0666']);
  });

  it('keeps commas inside quoted paths', () => {
    expect(splitArgs('AT_FDCWD</a>, "/usr/a,b\\"c", O_RDONLY')).toEqual(['AT_FDCWD</a>', '"/usr/a,b\\"c"', 'O_RDONLY']);
  });

  it('resolves relative paths through the decoded directory and names the read-only rule', () => {
    const v = classify('9 openat(AT_FDCWD</usr>, "lib/rel", O_WRONLY|O_CREAT, 0666) = -1 EROFS (Read-only file system)');
    expect(v).toMatchObject({ path: '/usr/lib/rel', errno: 'EROFS', access: 'write', rule: 'filesystem_policy.read_only[0]: /usr' });
  });

  it('resolves a plain relative path through /proc/PID/cwd', () => {
    const v = classify('9 mkdir("foo", 0777) = -1 EROFS (Read-only file system)', '/usr/share');
    expect(v?.path).toBe('/usr/share/foo');
  });

  it('reports reads only of hidden paths, with the hidden rule', () => {
    expect(classify('9 openat(AT_FDCWD</>, "/etc/shadow", O_RDONLY) = -1 ENOENT (No such file or directory)')).toMatchObject({
      access: 'read',
      rule: 'filesystem_policy.hidden[1]: /etc/shadow',
    });
    expect(classify('9 openat(AT_FDCWD</>, "/lib/x86_64/libc.so.6", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory)')).toBeUndefined();
  });

  it('a hidden path with nothing behind it on the host is not a violation (the ~/.npmrc rule over a home without one, issue 15); one that exists is', () => {
    const line = (p: string) => parseStraceLine(`9 openat(AT_FDCWD</sandbox>, "${p}", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory)`)!;
    const onHost = new Set(['/sandbox/.ssh', '/sandbox/.ssh/id_ed25519']);
    const existsOnHost = (p: string) => (p.startsWith('/sandbox') ? onHost.has(p) : undefined);
    // Masked directory: its real file reads as ENOENT inside and is reported.
    expect(classifyViolation({ parsed: line('/sandbox/.ssh/id_ed25519'), rules, existsOnHost })).toMatchObject({ access: 'read', errno: 'ENOENT' });
    // Nothing there on the host either: the plain ENOENT of a missing file.
    expect(classifyViolation({ parsed: line('/sandbox/.ssh/config'), rules, existsOnHost })).toBeUndefined();
    // Outside the workdir existence is not known: a hidden read stays a violation.
    expect(classifyViolation({ parsed: line('/etc/shadow'), rules, existsOnHost })).toMatchObject({ rule: 'filesystem_policy.hidden[1]: /etc/shadow' });
    // A refused write is a violation whatever exists.
    const write = parseStraceLine('9 openat(AT_FDCWD</sandbox>, "/sandbox/.ssh/config", O_WRONLY|O_CREAT, 0600) = -1 EROFS (Read-only file system)')!;
    expect(classifyViolation({ parsed: write, rules, existsOnHost })).toMatchObject({ access: 'write' });
  });

  it('ignores failures inside writable trees and ordinary errors like EEXIST', () => {
    expect(classify('9 openat(AT_FDCWD</sandbox>, "missing/f", O_WRONLY|O_CREAT, 0666) = -1 ENOENT (No such file or directory)')).toBeUndefined();
    expect(classify('9 mkdir("/usr", 0777) = -1 EEXIST (File exists)')).toBeUndefined();
  });

  it('uses the source of a rename and the link path of a symlink', () => {
    expect(classify('9 rename("/etc/hosts", "/sandbox/h") = -1 EROFS (Read-only file system)')?.path).toBe('/etc/hosts');
    expect(classify('9 symlinkat("/sandbox", AT_FDCWD</sandbox>, "/evil-link") = -1 EROFS (Read-only file system)')?.path).toBe('/evil-link');
  });

  it('ignores lines that are not failed calls', () => {
    expect(parseStraceLine('9 openat(AT_FDCWD</>, "/x", O_RDONLY) = 3</x>')).toBeUndefined();
    expect(parseStraceLine('garbage')).toBeUndefined();
  });
});
