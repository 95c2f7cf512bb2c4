/** Fixed-width column rendering for the list panes (cheap: only visible rows are formatted). */
import { fit, fitRight } from '../format.js';

export interface Column<T> {
  title: string;
  width: number;
  align?: 'left' | 'right';
  value(row: T): string;
}

/** Gives the one column with width 0 whatever is left of `total`. */
export function flex<T>(columns: Column<T>[], total: number): Column<T>[] {
  const fixed = columns.reduce((s, c) => s + c.width, 0) + Math.max(0, columns.length - 1);
  const rest = Math.max(4, total - fixed);
  return columns.map((c) => (c.width === 0 ? { ...c, width: rest } : c));
}

export function renderRow<T>(columns: Column<T>[], row: T): string {
  return columns.map((c) => (c.align === 'right' ? fitRight(c.value(row), c.width) : fit(c.value(row), c.width))).join(' ');
}

export function renderHeader<T>(columns: Column<T>[]): string {
  return columns.map((c) => (c.align === 'right' ? fitRight(c.title, c.width) : fit(c.title, c.width))).join(' ');
}

export function basename(p: string): string {
  const i = p.lastIndexOf('/');
  return i >= 0 && i < p.length - 1 ? p.slice(i + 1) : p;
}
