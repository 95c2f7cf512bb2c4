/**
 * The supervisor's pid file: `<pid>\n<start time>\n`, created exclusively (0600). The start time
 * (field 22 of /proc/<pid>/stat) tells a live supervisor from an unrelated process that reused
 * the pid of one that crashed.
 */
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { NemoclawError } from '../shared/errors.js';
import type { SandboxPaths } from '../shared/home.js';
import { readProcStat } from '../shared/procfs.js';

/** Process start time in clock ticks since boot, or undefined when the process does not exist. */
export function processStartTime(pid: number): string | undefined {
  const fields = readProcStat(pid);
  if (fields === undefined || isDead(fields)) return undefined;
  return fields[19];
}

function isDead(fields: string[]): boolean {
  return fields[0] === 'Z' || fields[0] === 'X';
}

/** Alive and not a zombie. */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // kill(0) succeeds on zombies (a crashed daemon whose parent never reaped it).
  const fields = readProcStat(pid);
  return fields === undefined || !isDead(fields); // no procfs: trust kill(0)
}

export interface PidRecord {
  pid: number;
  startTime: string | undefined;
}

export function readPidFile(pidFile: string): PidRecord | undefined {
  let text: string;
  try {
    text = readFileSync(pidFile, 'utf8');
  } catch {
    return undefined;
  }
  const [pidLine, startLine] = text.split('\n');
  const pid = Number(pidLine?.trim());
  if (!Number.isInteger(pid) || pid <= 0) return { pid: 0, startTime: undefined };
  const startTime = startLine?.trim();
  return { pid, startTime: startTime && startTime.length > 0 ? startTime : undefined };
}

/** The process named in the pid file is still the one that wrote it. */
export function pidRecordAlive(rec: PidRecord): boolean {
  if (!isProcessAlive(rec.pid)) return false;
  if (rec.startTime === undefined) return true;
  const now = processStartTime(rec.pid);
  return now === undefined || now === rec.startTime;
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** Remove a dead supervisor's pid file and socket. */
export function removeStaleFiles(paths: SandboxPaths): void {
  unlinkQuiet(paths.pidFile);
  unlinkQuiet(paths.controlSocket);
}

/**
 * Take the sandbox's pid lock for `pid` (this process by default). A pid file of a dead process is
 * stale and replaced; a live one means the sandbox is already supervised.
 */
export function acquirePidLock(paths: SandboxPaths, pid: number = process.pid): void {
  const content = `${pid}\n${processStartTime(pid) ?? ''}\n`;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      writeFileSync(paths.pidFile, content, { flag: 'wx', mode: 0o600 });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const rec = readPidFile(paths.pidFile);
    if (rec && rec.pid !== pid && pidRecordAlive(rec)) {
      throw new NemoclawError('already_running', `sandbox "${paths.name}" is already supervised by pid ${rec.pid}`, {
        nextStep: `use it (\`nemoclaw-tui status --name ${paths.name}\`) or stop it first with \`nemoclaw-tui down --name ${paths.name}\``,
      });
    }
    if (rec === undefined) continue; // removed between our write and read: try again
    removeStaleFiles(paths);
  }
  throw new NemoclawError('conflict', `could not take the pid lock ${paths.pidFile}`, {
    nextStep: 'another `up` of the same sandbox is racing this one; run `nemoclaw-tui status` to see which won',
  });
}

/** Release the lock if it is still ours. */
export function releasePidLock(paths: SandboxPaths, pid: number = process.pid): void {
  const rec = readPidFile(paths.pidFile);
  if (rec && rec.pid === pid) unlinkQuiet(paths.pidFile);
}
