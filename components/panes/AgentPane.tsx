import { memo } from 'react';
import { Text } from 'ink';
import { clockTime } from '../format.js';
import type { AgentRow } from '../selectors.js';
import type { Theme } from '../theme.js';
import { flex, renderRow, type Column } from './columns.js';
import { Line, PaneFrame, scrollOffset } from './PaneFrame.js';

export interface AgentPaneProps {
  rows: readonly AgentRow[];
  width: number;
  height: number;
  focused: boolean;
  selected: number;
  theme: Theme;
  filter: string;
}

function columnsFor(width: number): Column<AgentRow>[] {
  return flex<AgentRow>(
    [
      { title: 'TIME', width: 8, value: (r) => clockTime(r.ts) },
      { title: 'STREAM', width: 7, value: (r) => r.stream },
      { title: 'LINE', width: 0, value: (r) => r.line },
    ],
    width - 2,
  );
}

function levelColor(theme: Theme, row: AgentRow): string | undefined {
  if (row.level === 'error' || row.stream === 'stderr') return theme.deny;
  if (row.level === 'warn' || row.stream === 'budget') return theme.warn;
  if (row.stream === 'sandbox' || row.stream === 'policy') return theme.accent;
  return undefined;
}

/** The agent's log tail, newest at the top like every other list (so `g` is "latest"). */
export const AgentPane = memo(function AgentPane(props: AgentPaneProps) {
  const { rows, width, height, focused, selected, theme, filter } = props;
  const columns = columnsFor(width);
  const visible = Math.max(0, height - 1);
  const offset = scrollOffset(rows.length, selected, visible);
  const info = `${rows.length} lines${filter ? ` · /${filter}` : ''}`;
  return (
    <PaneFrame index={5} title="Agent" info={info} width={width} height={height} focused={focused} theme={theme}>
      {rows.length === 0 ? <Text color={theme.dim}>  no output yet</Text> : null}
      {rows.slice(offset, offset + visible).map((row, i) => {
        const isSelected = focused && offset + i === selected;
        return (
          <Line key={row.key + ':' + String(offset + i)} text={(isSelected ? '› ' : '  ') + renderRow(columns, row)} selected={isSelected} color={levelColor(theme, row)} />
        );
      })}
    </PaneFrame>
  );
});
