/** Full-body views that replace the panes: help, confirmation, detail, policy, too-small. */
import { Box, Text } from 'ink';
import { fit } from './format.js';
import type { Theme } from './theme.js';

export const HELP_LINES: ReadonlyArray<readonly [string, string]> = [
  ['Tab / Shift-Tab, 1-5', 'move between panes (1 Network, 2 Filesystem, 3 Meters, 4 Inference, 5 Agent)'],
  ['j k / ↓ ↑', 'move the selection'],
  ['g / G', 'newest / oldest row'],
  ['Enter', 'details of the selected row'],
  ['Esc', 'back (never decides anything)'],
  ['/', 'filter the focused list (Enter keeps it, Esc clears it)'],
  ['a', 'approve the held request once'],
  ['s', 'approve it for this session (until the supervisor restarts)'],
  ['A', 'allow with a scope: how long (once/15m/1h/restart/always), this or any binary, host:port / any port / *.domain; y writes exactly that'],
  ['d', 'deny it (type an optional reason, Enter denies, Esc cancels)'],
  ['D', 'deny with a scope, chosen the same way (a time-boxed deny stops a client that retries)'],
  ['b', 'raise the token budget (asks first)'],
  ['p', 'policy: current revision, history and effective YAML'],
  ['Q', 'quarantine: stop the agent, refuse all egress (asks first, with a reason)'],
  ['r', 'rules: the operator\'s always / time-boxed / session rules; x removes one (asks first)'],
  ['?', 'this help'],
  ['selection changed', 'the request under the cursor left and another took its row: press the key again'],
  ['q / Ctrl-C', 'detach; the supervisor and the agent keep running (asks first when requests are held)'],
];

export function HelpView({ width, height, theme }: { width: number; height: number; theme: Theme }) {
  const keyW = 22;
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <Text bold color={theme.accent}>
        {fit(' Keys', width)}
      </Text>
      {HELP_LINES.slice(0, Math.max(0, height - 3)).map(([k, what]) => (
        <Text key={k} wrap="truncate">
          {' ' + fit(k, keyW) + ' ' + what}
        </Text>
      ))}
      <Text color={theme.dim}> Alt-modified keys are ignored. Esc or ? closes this help.</Text>
    </Box>
  );
}

export interface ConfirmViewProps {
  width: number;
  height: number;
  theme: Theme;
  title: string;
  lines: string[];
  /** The bottom line (default: y / n). */
  keys?: string | undefined;
}

export function ConfirmView({ width, height, theme, title, lines, keys }: ConfirmViewProps) {
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden" borderStyle="round" borderColor={theme.warn}>
      <Text bold color={theme.warn} wrap="truncate">
        {title}
      </Text>
      {lines.map((l, i) => (
        <Text key={i} wrap="truncate">
          {l}
        </Text>
      ))}
      <Text> </Text>
      <Text bold wrap="truncate">
        {keys ?? '[y] yes [n] no (Esc cancels)'}
      </Text>
    </Box>
  );
}

export interface ScrollViewProps {
  width: number;
  height: number;
  theme: Theme;
  title: string;
  lines: readonly string[];
  scroll: number;
}

/** A scrollable text view (detail, policy). */
export function ScrollView({ width, height, theme, title, lines, scroll }: ScrollViewProps) {
  const visible = Math.max(0, height - 1);
  const top = Math.max(0, Math.min(scroll, Math.max(0, lines.length - visible)));
  const more = lines.length > visible ? ` ${top + 1}-${Math.min(lines.length, top + visible)}/${lines.length}` : '';
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <Text inverse bold color={theme.accent} wrap="truncate">
        {fit(` ${title}${more}`, width)}
      </Text>
      {lines.slice(top, top + visible).map((l, i) => (
        <Text key={top + i} wrap="truncate">
          {' ' + l}
        </Text>
      ))}
    </Box>
  );
}

export interface TooSmallViewProps {
  columns: number;
  rows: number;
  minColumns: number;
  minRows: number;
  theme: Theme;
  /** Held count, the request the decision keys act on, the keys (App.tsx tooSmallLines). */
  lines: readonly string[];
  flash?: { text: string; bad: boolean } | undefined;
}

export function TooSmallView({ columns, rows, minColumns, minRows, theme, lines, flash }: TooSmallViewProps) {
  return (
    <Box flexDirection="column" width={columns} height={rows} overflow="hidden">
      <Text bold wrap="wrap">
        Terminal too small: {columns}x{rows} (needs at least {minColumns}x{minRows}); the agent keeps running.
      </Text>
      {lines.map((l, i) => (
        <Text key={i} wrap="wrap" bold={i === 0} color={i === 0 ? theme.held : undefined}>
          {l}
        </Text>
      ))}
      {flash ? (
        <Text wrap="wrap" color={flash.bad ? theme.deny : theme.allow}>
          {flash.text}
        </Text>
      ) : null}
    </Box>
  );
}
