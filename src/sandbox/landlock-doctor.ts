/**
 * `doctor`'s Landlock check: is the helper built, which ABI the kernel offers (and so which rights a
 * sandbox gets), and whether this supervisor can read Landlock's denials from the audit stream.
 */
import { execa } from 'execa';
import { builtLandlockHelper, landlockAbi } from './landlock.js';

export interface LandlockDoctorCheck {
  id: string;
  title: string;
  ok: boolean;
  severity: 'error' | 'warn';
  detail: string;
  fix?: string;
}

const BY_ABI: Array<[number, string]> = [
  [1, 'filesystem rules'], [2, 'rename/link across trees (refer)'], [3, 'truncate'], [4, 'TCP connect rules'],
  [5, 'device ioctls'], [6, 'signal and abstract-socket scoping'], [7, 'audit records of denials'],
];

/** `helper`: the helper to check (default: the built one); null: as if none was built. */
export async function landlockCheck(opts: { helper?: string | null } = {}): Promise<LandlockDoctorCheck> {
  const helper = opts.helper === null ? undefined : (opts.helper ?? builtLandlockHelper());
  const title = 'Landlock second filesystem layer (helper built, kernel ABI, audit records)';
  if (!helper) {
    return {
      id: 'landlock', title, ok: false, severity: 'warn',
      detail: 'the helper is not built (no C compiler when `npm run build` ran): sandboxes run on bubblewrap alone (best_effort) or refuse to start (hard_requirement)',
      fix: 'apt-get install -y gcc libc6-dev && npm run build',
    };
  }
  const abi = landlockAbi(helper);
  if (abi < 1) {
    return {
      id: 'landlock', title, ok: false, severity: 'warn',
      detail: 'the kernel has no Landlock: sandboxes run on bubblewrap alone (best_effort) or refuse to start (hard_requirement)',
      fix: 'use Linux ≥ 5.13 built with CONFIG_SECURITY_LANDLOCK=y and "landlock" in the lsm= boot parameter',
    };
  }
  const has = BY_ABI.filter(([a]) => abi >= a).map(([, what]) => what);
  const lacks = BY_ABI.filter(([a]) => abi < a).map(([a, what]) => `${what} (ABI ${a})`);
  let audit: string;
  if (abi < 7) audit = 'denials are not logged by this kernel (ABI 7): the strace monitor reports violations';
  else if (process.getuid?.() !== 0) audit = 'denials are logged by the kernel, but reading the audit stream needs root (CAP_AUDIT_READ): no kernel-sourced violation log in non-root mode';
  else {
    // Start the reader and close its stdin at once: it says whether the stream is readable, then
    // exits (turning auditing back off if it had turned it on).
    const r = await execa(helper, ['audit', '--enable'], { input: '', reject: false, timeout: 5000 });
    const ready = /^ready enabled=(\d+) by_us=(\d) auditd_pid=(\d+)/m.exec(String(r.stdout));
    audit = ready
      ? `the supervisor reads Landlock's denials from the audit stream (${ready[3] !== '0' ? `auditd pid ${ready[3]} runs` : 'no auditd: auditing is turned on while a sandbox runs, and records also reach the kernel log'})`
      : `the audit stream is not readable (${String(r.stderr).trim() || `exit ${r.exitCode}`}): the strace monitor reports violations`;
  }
  return {
    id: 'landlock', title, ok: true, severity: 'warn',
    detail: `ABI ${abi}: ${has.join(', ')}${lacks.length > 0 ? `; not on this kernel: ${lacks.join(', ')}` : ''}; ${audit}`,
  };
}
