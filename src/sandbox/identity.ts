/**
 * The unprivileged host uid the sandbox runs as. bwrap started by root keeps the sandboxed process
 * host root (it can read /etc/shadow), so the driver spawns bwrap itself as this uid.
 */
import { readFileSync } from 'node:fs';

export const SANDBOX_USER = 'nemoclaw-sandbox';
export const NOBODY_UID = 65534;

export interface SandboxIdentity {
  uid: number;
  gid: number;
  /** User name as in /etc/passwd (strace -u needs a name). */
  user: string;
  /** 'dedicated' when the nemoclaw-sandbox user exists, 'nobody' for the 65534 fallback. */
  kind: 'dedicated' | 'nobody' | 'policy';
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

export function readPasswd(file = '/etc/passwd'): PasswdEntry[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || f[0] === undefined) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (Number.isInteger(uid) && Number.isInteger(gid)) out.push({ name: f[0], uid, gid });
  }
  return out;
}

/**
 * Resolve the sandbox identity: the policy's `run_as_user` when it names an unprivileged host user,
 * else `nemoclaw-sandbox`, else 65534. Never root.
 */
export function resolveSandboxIdentity(runAsUser?: string, passwdFile = '/etc/passwd'): SandboxIdentity {
  const entries = readPasswd(passwdFile);
  if (runAsUser && runAsUser !== 'sandbox') {
    const e = entries.find((x) => x.name === runAsUser);
    if (e && e.uid !== 0) return { uid: e.uid, gid: e.gid, user: e.name, kind: 'policy' };
  }
  const dedicated = entries.find((x) => x.name === SANDBOX_USER);
  if (dedicated && dedicated.uid !== 0) {
    return { uid: dedicated.uid, gid: dedicated.gid, user: dedicated.name, kind: 'dedicated' };
  }
  const nobody = entries.find((x) => x.uid === NOBODY_UID);
  return { uid: NOBODY_UID, gid: nobody?.gid ?? NOBODY_UID, user: nobody?.name ?? 'nobody', kind: 'nobody' };
}
