import type { ReactNode } from 'react';
import { Box, Text } from 'ink';
import { fit } from '../format.js';
import type { Theme } from '../theme.js';

export interface PaneFrameProps {
  index: number;
  title: string;
  /** Right side of the title line (counts, filter). */
  info?: string | undefined;
  width: number;
  height: number;
  focused: boolean;
  theme: Theme;
  children?: ReactNode;
}

/**
 * A pane is a one-line title bar and its content rows. No box borders: at 80x24 the two border
 * rows and columns per pane are worth more as content, and each frame stays smaller over SSH.
 */
export function PaneFrame({ index, title, info, width, height, focused, theme, children }: PaneFrameProps) {
  const marker = focused ? '▶' : ' ';
  const left = `${marker}${index} ${title} `;
  const right = info ? ` ${info} ` : '';
  const bar = fit(left + ' '.repeat(Math.max(0, width - left.length - right.length)) + right, width);
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <Text inverse={focused} bold={focused} color={focused ? theme.accent : theme.dim} wrap="truncate">
        {bar}
      </Text>
      {children}
    </Box>
  );
}

/** First row to show so that `selected` stays visible in `visible` rows. */
export function scrollOffset(total: number, selected: number, visible: number): number {
  if (visible <= 0 || total <= visible) return 0;
  const max = total - visible;
  return Math.min(max, Math.max(0, selected - visible + 1));
}

export interface LineProps {
  text: string;
  selected?: boolean;
  color?: string | undefined;
  bold?: boolean;
  dim?: boolean;
}

/** One content row; the selection keeps a `›` marker so it stays visible without colour. */
export function Line({ text, selected, color, bold, dim }: LineProps) {
  return (
    <Text inverse={selected} color={color} bold={bold} dimColor={dim} wrap="truncate">
      {text}
    </Text>
  );
}
