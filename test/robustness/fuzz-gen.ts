/**
 * Seeded generators for the structure-aware fuzzers (issue 14): a small PRNG, picking helpers,
 * and a time-bounded loop that names the seed and case number of a failure so it replays.
 *
 *   NEMOCLAW_FUZZ_SEED=1234 npx vitest run test/robustness/fuzz-parser.test.ts   # replay a seed
 *   NEMOCLAW_FUZZ_SEED=random npx vitest run test/robustness/fuzz-*.test.ts       # a fresh seed
 *   NEMOCLAW_FUZZ_MS=60000 npx vitest run test/robustness/fuzz-*.test.ts          # fuzz longer
 *
 * Each fuzz test derives its own stream from the run seed and its name, so adding a test does not
 * change what the others generate.
 */

/**
 * Run seed: NEMOCLAW_FUZZ_SEED; `random` for a fresh one (printed in every failure). Default: a
 * fixed seed, so the suite (CI) is reproducible; the time budget still decides how far it gets.
 */
export const DEFAULT_FUZZ_SEED = 20261203;
export const FUZZ_SEED: number = (() => {
  const env = process.env.NEMOCLAW_FUZZ_SEED;
  if (env === undefined || env === '') return DEFAULT_FUZZ_SEED;
  if (env !== 'random') {
    const n = Number(env);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`NEMOCLAW_FUZZ_SEED must be a non-negative integer, got "${env}"`);
    return n >>> 0;
  }
  return (Date.now() ^ (process.pid << 16)) >>> 0;
})();

/** Time budget per fuzz test (ms): NEMOCLAW_FUZZ_MS, default 8000. */
export const FUZZ_MS: number = (() => {
  const env = process.env.NEMOCLAW_FUZZ_MS;
  if (env === undefined || env === '') return 8_000;
  const n = Number(env);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`NEMOCLAW_FUZZ_MS must be a positive number of ms, got "${env}"`);
  return n;
})();

/** vitest timeout for a fuzz test: its budget plus generous room for setup on a loaded CI box. */
export const FUZZ_TIMEOUT_MS = FUZZ_MS * 2 + 60_000;

function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** mulberry32: small, fast, good enough for test input generation. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A stream for one test: the run seed mixed with the test's name and the case number. */
  static forCase(name: string, seed: number, caseNo: number): Rng {
    return new Rng((hashString(name) ^ seed ^ Math.imul(caseNo + 1, 0x9e3779b1)) >>> 0);
  }

  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  bool(p = 0.5): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)] as T;
  }

  /** Weighted pick: [weight, value] pairs. */
  weighted<T>(items: ReadonlyArray<readonly [number, T]>): T {
    const total = items.reduce((a, [w]) => a + w, 0);
    let r = this.next() * total;
    for (const [w, v] of items) {
      r -= w;
      if (r < 0) return v;
    }
    return items[items.length - 1]![1];
  }

  /** `n` characters drawn from `alphabet`. */
  chars(alphabet: string, n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(this.next() * alphabet.length)];
    return s;
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.next() * 256);
    return b;
  }
}

export interface FuzzStats {
  cases: number;
  ms: number;
  seed: number;
  perSecond: number;
}

/**
 * Run `body` on fresh cases until the budget is spent (at least `minCases`). A throw is rethrown
 * with the seed, the case number and how to replay it. `body` gets a per-case Rng so one case
 * replays alone.
 */
export async function fuzzLoop(
  name: string,
  body: (rng: Rng, caseNo: number) => void | Promise<void>,
  opts: { ms?: number; minCases?: number; seed?: number } = {},
): Promise<FuzzStats> {
  const seed = opts.seed ?? FUZZ_SEED;
  const ms = opts.ms ?? FUZZ_MS;
  const minCases = opts.minCases ?? 50;
  const t0 = Date.now();
  let caseNo = 0;
  for (; caseNo < minCases || Date.now() - t0 < ms; caseNo++) {
    const rng = Rng.forCase(name, seed, caseNo);
    try {
      await body(rng, caseNo);
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      e.message = `[fuzz ${name}] seed ${seed} case ${caseNo} (replay: NEMOCLAW_FUZZ_SEED=${seed}): ${e.message}`;
      throw e;
    }
  }
  const elapsed = Date.now() - t0;
  const stats = { cases: caseNo, ms: elapsed, seed, perSecond: Math.round((caseNo * 1000) / Math.max(1, elapsed)) };
  console.log(`[fuzz ${name}] seed ${seed}: ${stats.cases} cases in ${elapsed} ms (${stats.perSecond}/s)`);
  return stats;
}

/** Printable, bounded rendering of an input for a failure message. */
export function show(input: Buffer | string, max = 600): string {
  const s = typeof input === 'string' ? input : input.toString('latin1');
  const j = JSON.stringify(s.length > max ? s.slice(0, max) + `…(+${s.length - max} chars)` : s);
  return j;
}
