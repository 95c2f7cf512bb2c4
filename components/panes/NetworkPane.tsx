import { memo } from 'react';
import { Text } from 'ink';
import { clockTime, duration } from '../format.js';
import type { HeldRow, NetRow } from '../selectors.js';
import { verdictColor, type Theme } from '../theme.js';
import { basename, flex, renderHeader, renderRow, type Column } from './columns.js';
import { Line, PaneFrame, scrollOffset } from './PaneFrame.js';

export type NetworkItem = { type: 'held'; row: HeldRow } | { type: 'history'; row: NetRow };

export interface NetworkPaneProps {
  items: readonly NetworkItem[];
  heldCount: number;
  width: number;
  height: number;
  focused: boolean;
  selected: number;
  theme: Theme;
  now: number;
  filter: string;
}

interface Cells {
  time: string;
  verdict: string;
  hostPort: string;
  binary: string;
  method: string;
  path: string;
  rule: string;
}

const WIDE_BINARY = 20;

/** The full path when it fits the wide column, else the name (the detail view has the path). */
function binaryCell(binary: string, wide: boolean): string {
  return wide && binary.length <= WIDE_BINARY ? binary : basename(binary);
}

function cells(item: NetworkItem, now: number, wide: boolean): Cells {
  if (item.type === 'held') {
    const r = item.row;
    // Time left before it times out (or, refused while nobody was attached, stops being listed).
    const left = r.deadline === undefined ? undefined : r.deadline - now;
    const label = r.state === 'unattended' ? 'REFUSED' : 'HELD';
    return {
      time: left === undefined ? '-' : left <= 0 ? 'now' : `${duration(left)} left`,
      verdict: r.hits > 1 ? `${label}×${r.hits}` : label,
      hostPort: `${r.host}:${r.port}`,
      binary: binaryCell(r.binary, wide),
      method: r.method,
      path: r.path,
      rule: 'awaiting you',
    };
  }
  const r = item.row;
  return {
    time: clockTime(r.ts),
    verdict: r.verdict,
    hostPort: `${r.host}:${r.port}`,
    binary: binaryCell(r.binary, wide),
    method: r.method,
    path: r.path,
    rule: r.rule !== '-' ? r.rule : r.reason,
  };
}

function columnsFor(width: number): Column<Cells>[] {
  const wide = width >= 110;
  const cols: Column<Cells>[] = [
    { title: 'TIME/LEFT', width: 10, value: (c) => c.time },
    { title: 'VERDICT', width: 11, value: (c) => c.verdict },
    { title: 'HOST:PORT', width: wide ? 32 : 22, value: (c) => c.hostPort },
    { title: 'BINARY', width: wide ? WIDE_BINARY : 12, value: (c) => c.binary },
    { title: 'METHOD', width: 7, value: (c) => c.method },
    { title: 'PATH', width: 0, value: (c) => c.path },
  ];
  if (wide) cols.push({ title: 'RULE/REASON', width: 24, value: (c) => c.rule });
  return flex(cols, width - 2);
}

export const NetworkPane = memo(function NetworkPane(props: NetworkPaneProps) {
  const { items, heldCount, width, height, focused, selected, theme, now, filter } = props;
  const columns = columnsFor(width);
  const visible = Math.max(0, height - 2);
  const offset = scrollOffset(items.length, selected, visible);
  const shown = items.slice(offset, offset + visible);
  const wide = width >= 110;
  const info = `${heldCount > 0 ? `${heldCount} held · ` : ''}${items.length - heldCount} recent${filter ? ` · /${filter}` : ''}`;
  return (
    <PaneFrame index={1} title="Network" info={info} width={width} height={height} focused={focused} theme={theme}>
      <Text color={theme.dim} wrap="truncate">
        {'  ' + renderHeader(columns)}
      </Text>
      {shown.length === 0 ? <Text color={theme.dim}>  no network activity yet</Text> : null}
      {shown.map((item, i) => {
        const isSelected = focused && offset + i === selected;
        const text = (isSelected ? '› ' : '  ') + renderRow(columns, cells(item, now, wide));
        return item.type === 'held' ? (
          <Line key={`h:${item.row.id}`} text={text} selected={isSelected} color={theme.held} bold />
        ) : (
          <Line key={item.row.key} text={text} selected={isSelected} color={verdictColor(theme, item.row.verdict)} />
        );
      })}
    </PaneFrame>
  );
});
