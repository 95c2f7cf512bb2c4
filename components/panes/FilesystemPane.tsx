import { memo } from 'react';
import { Text } from 'ink';
import { clockTime } from '../format.js';
import type { FsRow } from '../selectors.js';
import type { Theme } from '../theme.js';
import { basename, flex, renderHeader, renderRow, type Column } from './columns.js';
import { Line, PaneFrame, scrollOffset } from './PaneFrame.js';

export interface FilesystemPaneProps {
  rows: readonly FsRow[];
  width: number;
  height: number;
  focused: boolean;
  selected: number;
  theme: Theme;
  filter: string;
}

/** `filesystem_policy.read_only[1]: /etc` → `read_only: /etc` (the detail view keeps the full text). */
export function shortRule(rule: string): string {
  return rule.replace(/^filesystem_policy\./, '').replace(/^([a-z_]+)\[\d+\]/, '$1');
}

function columnsFor(width: number): Column<FsRow>[] {
  const cols: Column<FsRow>[] = [{ title: 'TIME', width: 8, value: (r) => clockTime(r.ts) }];
  if (width < 50) {
    cols.push({ title: 'BINARY', width: 8, value: (r) => basename(r.binary) });
    cols.push({ title: 'PATH', width: 0, value: (r) => r.path });
  } else {
    cols.push({ title: 'BINARY', width: width >= 70 ? 14 : 10, value: (r) => basename(r.binary) });
    cols.push({ title: 'SYSCALL', width: 10, value: (r) => r.syscall });
    cols.push({ title: 'PATH', width: 0, value: (r) => r.path });
    if (width >= 70) cols.push({ title: 'ERRNO', width: 7, value: (r) => r.errno });
    if (width >= 70) cols.push({ title: 'RULE', width: width >= 90 ? 22 : 16, value: (r) => shortRule(r.rule) });
  }
  return flex(cols, width - 2);
}

export const FilesystemPane = memo(function FilesystemPane(props: FilesystemPaneProps) {
  const { rows, width, height, focused, selected, theme, filter } = props;
  const columns = columnsFor(width);
  const visible = Math.max(0, height - 2);
  const offset = scrollOffset(rows.length, selected, visible);
  const info = `${rows.length} violations${filter ? ` · /${filter}` : ''}`;
  return (
    <PaneFrame index={2} title="Filesystem" info={info} width={width} height={height} focused={focused} theme={theme}>
      <Text color={theme.dim} wrap="truncate">
        {'  ' + renderHeader(columns)}
      </Text>
      {rows.length === 0 ? <Text color={theme.dim}>  no violations</Text> : null}
      {rows.slice(offset, offset + visible).map((row, i) => {
        const isSelected = focused && offset + i === selected;
        return <Line key={row.key} text={(isSelected ? '› ' : '  ') + renderRow(columns, row)} selected={isSelected} color={theme.deny} />;
      })}
    </PaneFrame>
  );
});
