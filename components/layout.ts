/**
 * Pane geometry from the terminal size. Narrow terminals (80..119 columns) stack the panes; wide
 * ones put Network/Inference/Agent on the left and Meters/Filesystem on the right.
 */
export const PANE_IDS = ['network', 'filesystem', 'meters', 'inference', 'agent'] as const;
export type PaneId = (typeof PANE_IDS)[number];

export const PANE_TITLES: Record<PaneId, string> = {
  network: 'Network',
  filesystem: 'Filesystem',
  meters: 'Meters',
  inference: 'Inference',
  agent: 'Agent',
};

export const MIN_COLUMNS = 80;
export const MIN_ROWS = 24;
export const WIDE_COLUMNS = 120;

export interface PaneRect {
  id: PaneId;
  width: number;
  /** Including the title line. */
  height: number;
}

/** Columns of stacked panes, left to right. */
export interface Layout {
  kind: 'narrow' | 'wide';
  /** Each entry is one horizontal band (narrow) or one column (wide). */
  groups: PaneRect[][];
}

export function isTooSmall(columns: number, rows: number): boolean {
  return columns < MIN_COLUMNS || rows < MIN_ROWS;
}

export function computeLayout(columns: number, bodyRows: number): Layout {
  const H = Math.max(8, bodyRows);
  if (columns < WIDE_COLUMNS) {
    const network = Math.max(4, Math.round(H * 0.32));
    const inference = Math.max(3, Math.round(H * 0.22));
    const middle = Math.max(4, Math.round(H * 0.28));
    const agent = Math.max(2, H - network - inference - middle);
    const left = Math.floor(columns / 2);
    return {
      kind: 'narrow',
      groups: [
        [{ id: 'network', width: columns, height: network }],
        [{ id: 'inference', width: columns, height: inference }],
        [
          { id: 'filesystem', width: left, height: middle },
          { id: 'meters', width: columns - left, height: middle },
        ],
        [{ id: 'agent', width: columns, height: agent }],
      ],
    };
  }
  const leftWidth = Math.round(columns * 0.6);
  const rightWidth = columns - leftWidth;
  const network = Math.round(H * 0.45);
  const inference = Math.round(H * 0.3);
  const meters = Math.round(H * 0.5);
  return {
    kind: 'wide',
    groups: [
      [
        { id: 'network', width: leftWidth, height: network },
        { id: 'inference', width: leftWidth, height: inference },
        { id: 'agent', width: leftWidth, height: H - network - inference },
      ],
      [
        { id: 'meters', width: rightWidth, height: meters },
        { id: 'filesystem', width: rightWidth, height: H - meters },
      ],
    ],
  };
}
