/** Small formatting helpers shared by the panes. Missing values always render as `-`. */

export const MISSING = '-';

export function fit(text: string, width: number): string {
  if (width <= 0) return '';
  if (text.length <= width) return text.padEnd(width, ' ');
  if (width === 1) return '…';
  return text.slice(0, width - 1) + '…';
}

/** Right-aligned fixed-width cell. */
export function fitRight(text: string, width: number): string {
  if (width <= 0) return '';
  if (text.length <= width) return text.padStart(width, ' ');
  return text.slice(0, width - 1) + '…';
}

export function clockTime(ts: string | undefined): string {
  if (!ts) return MISSING;
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return MISSING;
  return d.toISOString().slice(11, 19);
}

/** 5s, 3m12s, 2h05m, 3d04h */
export function duration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms) || ms < 0) return MISSING;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

export function compactNumber(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return MISSING;
  const abs = Math.abs(n);
  if (abs < 1000) return String(Math.round(n * 10) / 10);
  if (abs < 1_000_000) return `${(n / 1000).toFixed(abs < 10_000 ? 1 : 0)}k`;
  if (abs < 1_000_000_000) return `${(n / 1_000_000).toFixed(abs < 10_000_000 ? 1 : 0)}M`;
  return `${(n / 1_000_000_000).toFixed(1)}G`;
}

export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return MISSING;
  const units = ['B', 'K', 'M', 'G', 'T'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)}${units[i]}`;
}

export function percent(fraction: number | undefined): string {
  if (fraction === undefined || !Number.isFinite(fraction)) return MISSING;
  return `${Math.round(fraction * 100)}%`;
}

export function money(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return MISSING;
  return `$${n < 10 ? n.toFixed(2) : n.toFixed(0)}`;
}
