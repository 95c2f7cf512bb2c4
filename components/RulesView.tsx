/**
 * The rules view (`r`): the operator's rules (always and time-boxed ones in the overlay, session
 * ones until restart), a cursor, and `x` to remove the one under it after a confirmation. Rows come
 * from `GET /v1/rules` through the TuiClient and are read defensively.
 */
import { Box, Text } from 'ink';
import { duration, fit } from './format.js';
import type { Theme } from './theme.js';

export interface RuleRow {
  id: string;
  scope: string;
  action: string;
  host: string;
  port: string;
  binary: string;
  /** ms epoch when a time-boxed rule ends. */
  expiresAt: number | undefined;
  reason: string;
}

function str(v: unknown, dflt = '-'): string {
  return typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : dflt;
}

export function ruleRows(raw: readonly Record<string, unknown>[]): RuleRow[] {
  return raw
    .filter((r) => typeof r.id === 'string')
    .map((r) => {
      const until = typeof r.expires_at === 'string' ? Date.parse(r.expires_at) : NaN;
      return {
        id: r.id as string,
        scope: str(r.scope),
        action: str(r.action),
        host: str(r.host),
        port: r.port === 'any' ? '*' : str(r.port),
        binary: typeof r.binary === 'string' ? r.binary : 'any binary',
        expiresAt: Number.isFinite(until) ? until : undefined,
        reason: typeof r.reason === 'string' ? r.reason : '',
      };
    });
}

/** How long a rule lasts: `always`, `until restart`, or the time left of a time-boxed one. */
export function ruleLasts(r: RuleRow, now: number): string {
  if (r.expiresAt !== undefined) return `${duration(Math.max(0, r.expiresAt - now))} left`;
  return r.scope === 'session' ? 'until restart' : 'always';
}

/** One rule as the view and the removal dialog show it. */
export function ruleSummary(r: RuleRow, now: number): string {
  // What it does and for how long first: a long host is what gets cut at 80 columns.
  return `${r.action.padEnd(5)} ${ruleLasts(r, now).padEnd(13)} ${r.host}:${r.port} ${r.binary}`;
}

export interface RulesViewProps {
  width: number;
  height: number;
  theme: Theme;
  rules: RuleRow[] | undefined;
  error: string | undefined;
  cursor: number;
  now: number;
}

export function RulesView({ width, height, theme, rules, error, cursor, now }: RulesViewProps) {
  const title = rules ? ` Operator rules (${rules.length})  x remove  j/k move  Esc back` : error ? ' Operator rules (could not load)' : ' Operator rules (loading…)';
  const visible = Math.max(1, height - 2);
  const top = rules ? Math.max(0, Math.min(cursor - visible + 1, rules.length - visible, cursor)) : 0;
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <Text inverse bold color={theme.accent} wrap="truncate">
        {fit(title, width)}
      </Text>
      {error ? <Text color={theme.deny} wrap="wrap">{' ' + error}</Text> : null}
      {rules && rules.length === 0 ? <Text wrap="wrap"> No operator rules. A/D on a held request add one; time-boxed ones end by themselves.</Text> : null}
      {rules?.slice(Math.max(0, top), Math.max(0, top) + visible).map((r, i) => {
        const at = Math.max(0, top) + i;
        const mark = at === cursor ? '› ' : '  ';
        return (
          <Text key={r.id} wrap="truncate" bold={at === cursor} color={r.action === 'deny' ? theme.deny : theme.allow}>
            {fit(`${mark}${r.id.padEnd(11)} ${ruleSummary(r, now)}${r.reason ? ` · ${r.reason}` : ''}`, width)}
          </Text>
        );
      })}
    </Box>
  );
}
