/**
 * Our own gauges and sparklines: plain strings built from eighth-block characters (or `#`/`.` in
 * ASCII mode), so they render inside Ink like any other text and cost a few bytes per frame.
 * The number is always printed next to them by the caller; the bar is only a hint.
 */

const EIGHTHS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
const FULL = '█';
const SPARK = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const ASCII_SPARK = ['_', '.', '-', '~', '=', '+', '*', '#'];

function clamp01(x: number): number {
  if (!Number.isFinite(x)) return 0;
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

/** A horizontal bar `width` cells wide filled to `fraction` (0..1); undefined renders an empty track. */
export function gaugeBar(fraction: number | undefined, width: number, ascii: boolean): string {
  const w = Math.max(0, Math.floor(width));
  if (w === 0) return '';
  if (fraction === undefined || !Number.isFinite(fraction)) return (ascii ? '.' : ' ').repeat(w);
  const cells = clamp01(fraction) * w;
  if (ascii) {
    const full = Math.round(cells);
    return '#'.repeat(full) + '.'.repeat(w - full);
  }
  let full = Math.floor(cells);
  let rest = Math.round((cells - full) * 8);
  if (rest === 8) {
    full += 1;
    rest = 0;
  }
  const partial = full < w ? (EIGHTHS[rest] ?? '') : '';
  const used = full + (partial ? 1 : 0);
  return FULL.repeat(full) + partial + ' '.repeat(Math.max(0, w - used));
}

/** The last `width` values as a sparkline scaled to `max` (default: the largest value shown). */
export function sparkline(values: readonly number[], width: number, ascii: boolean, max?: number): string {
  const w = Math.max(0, Math.floor(width));
  if (w === 0) return '';
  const shown = values.slice(-w).filter((v) => Number.isFinite(v));
  const top = max !== undefined && max > 0 ? max : Math.max(0, ...shown);
  const ramp = ascii ? ASCII_SPARK : SPARK;
  let out = '';
  for (const v of shown) {
    const level = top > 0 ? Math.round(clamp01(v / top) * (ramp.length - 1)) : 0;
    out += ramp[level];
  }
  return out.padStart(w, ' ');
}

/**
 * Whether to draw with ASCII only: asked for (`--ascii`), a console that lacks the glyphs
 * (`TERM=linux` or `dumb`), or a locale that is not UTF-8.
 */
export function shouldUseAscii(env: NodeJS.ProcessEnv, asked: boolean): boolean {
  if (asked) return true;
  const term = env.TERM ?? '';
  if (term === 'linux' || term === 'dumb') return true;
  const locale = env.LC_ALL || env.LC_CTYPE || env.LANG || '';
  return !/utf-?8/i.test(locale);
}
