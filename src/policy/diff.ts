/**
 * A small unified diff over lines (no dependency): common prefix/suffix trimmed, LCS on the rest,
 * hunks with `context` lines around changes, in the format of `diff -u`.
 */
type Op = { t: ' ' | '-' | '+'; s: string };

const MAX_LCS_CELLS = 4_000_000;

function splitLines(text: string): string[] {
  if (text.length === 0) return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function editScript(a: string[], b: string[]): Op[] {
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  const am = a.slice(pre, a.length - suf);
  const bm = b.slice(pre, b.length - suf);
  const ops: Op[] = a.slice(0, pre).map((s) => ({ t: ' ', s }));
  const n = am.length;
  const m = bm.length;
  if ((n + 1) * (m + 1) > MAX_LCS_CELLS) {
    // Too large to align: show the middle as replaced.
    for (const s of am) ops.push({ t: '-', s });
    for (const s of bm) ops.push({ t: '+', s });
  } else {
    // lcs[i][j] = LCS length of am[i..] and bm[j..]
    const w = m + 1;
    const lcs = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i * w + j] = am[i] === bm[j] ? lcs[(i + 1) * w + j + 1]! + 1 : Math.max(lcs[(i + 1) * w + j]!, lcs[i * w + j + 1]!);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (am[i] === bm[j]) {
        ops.push({ t: ' ', s: am[i]! });
        i++;
        j++;
      } else if (lcs[(i + 1) * w + j]! >= lcs[i * w + j + 1]!) {
        ops.push({ t: '-', s: am[i++]! });
      } else {
        ops.push({ t: '+', s: bm[j++]! });
      }
    }
    while (i < n) ops.push({ t: '-', s: am[i++]! });
    while (j < m) ops.push({ t: '+', s: bm[j++]! });
  }
  for (const s of a.slice(a.length - suf)) ops.push({ t: ' ', s });
  return ops;
}

function range(start: number, count: number): string {
  // diff -u: an empty range names the line before it.
  if (count === 0) return `${start - 1},0`;
  return count === 1 ? `${start}` : `${start},${count}`;
}

/** Unified diff of two texts; '' when they are equal. */
export function unifiedDiff(before: string, after: string, labelBefore = 'a', labelAfter = 'b', context = 3): string {
  const ops = editScript(splitLines(before), splitLines(after));
  const changes: number[] = [];
  ops.forEach((op, k) => {
    if (op.t !== ' ') changes.push(k);
  });
  if (changes.length === 0) return '';
  // Line numbers (1-based) in a and b at each op.
  const aLine: number[] = [];
  const bLine: number[] = [];
  let al = 1;
  let bl = 1;
  for (const op of ops) {
    aLine.push(al);
    bLine.push(bl);
    if (op.t !== '+') al++;
    if (op.t !== '-') bl++;
  }
  const out = [`--- ${labelBefore}`, `+++ ${labelAfter}`];
  let c = 0;
  while (c < changes.length) {
    const start = Math.max(0, changes[c]! - context);
    let last = changes[c]!;
    while (c + 1 < changes.length && changes[c + 1]! - last <= 2 * context) last = changes[++c]!;
    c++;
    const end = Math.min(ops.length, last + context + 1);
    const slice = ops.slice(start, end);
    const aCount = slice.filter((o) => o.t !== '+').length;
    const bCount = slice.filter((o) => o.t !== '-').length;
    out.push(`@@ -${range(aLine[start]!, aCount)} +${range(bLine[start]!, bCount)} @@`);
    for (const op of slice) out.push(`${op.t}${op.s}`);
  }
  return `${out.join('\n')}\n`;
}
