import { memo } from 'react';
import { Text } from 'ink';
import { clockTime } from '../format.js';
import type { InferenceRow } from '../selectors.js';
import type { Theme } from '../theme.js';
import { flex, renderHeader, renderRow, type Column } from './columns.js';
import { Line, PaneFrame, scrollOffset } from './PaneFrame.js';

export interface InferencePaneProps {
  rows: readonly InferenceRow[];
  width: number;
  height: number;
  focused: boolean;
  selected: number;
  theme: Theme;
  filter: string;
  ascii: boolean;
}

type Fields = Record<string, unknown>;
const text = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

/** `PII: email,phone`, `proprietary code`, `secret` (what the route matched on). */
function describeKinds(kinds: readonly string[]): string {
  const parts: string[] = [];
  const pii = kinds.filter((k) => k !== 'proprietary' && k !== 'secret');
  if (pii.length > 0) parts.push(`PII: ${pii.join(',')}`);
  if (kinds.includes('proprietary')) parts.push('proprietary code');
  if (kinds.includes('secret')) parts.push('secret');
  return parts.join('; ');
}

/**
 * Where the call went and why, in words: `local (PII: email)`, `cloud (no sensitive data)`,
 * `cloud, redacted (ollama down)`, `cloud, redacted (PII: phone)`, `blocked (secret)`.
 */
export function routeLabel(raw: Fields): string {
  const action = text(raw.action);
  const reason = text(raw.reason) ?? '';
  const matched = /(?:^|; )entities ([a-z_,]+)/.exec(reason)?.[1]?.split(',') ?? [];
  const detected = typeof raw.entities === 'object' && raw.entities !== null ? Object.keys(raw.entities as Fields) : [];
  if (action === 'block') return `blocked (${describeKinds(matched.length > 0 ? matched : detected) || (text(raw.rule) ?? 'policy')})`;
  if (action === 'none') return 'no route';
  const where = text(raw.locality) ?? text(raw.provider) ?? '?';
  const fallbackFrom = text(raw.fallback_from);
  const redacted = raw.redacted_for_fallback === true || action === 'redact_then';
  if (raw.outcome === 'blocked' && fallbackFrom === undefined) return `blocked (${text(raw.provider) ?? 'provider'} down; ${describeKinds(detected) || 'policy'})`;
  if (fallbackFrom !== undefined) return `${where}${redacted ? ', redacted' : ''} (${fallbackFrom} down)`;
  if (matched.length > 0) return `${where}${redacted ? ', redacted' : ''} (${describeKinds(matched)})`;
  if (detected.length === 0) return `${where} (no sensitive data)`;
  // Detected, but the route did not match on it (or its reason is not the router's): the rule says why.
  return `${text(raw.rule) ?? 'route'}: ${where}${redacted ? ', redacted' : ''}`;
}

function columnsFor(width: number, ascii: boolean): Column<InferenceRow>[] {
  const arrow = ascii ? '->' : '→';
  // After a fallback the done event names the provider that answered.
  const provider = (r: InferenceRow): string => `${text(r.raw.provider) ?? r.provider}/${text(r.raw.model) ?? r.model}`;
  const cols: Column<InferenceRow>[] = [
    { title: 'TIME', width: 8, value: (r) => clockTime(r.ts) },
    { title: `REQUESTED ${arrow} PROVIDER/MODEL`, width: 0, value: (r) => `${r.requested} ${arrow} ${provider(r)}` },
  ];
  // Where and why in words; the rule's name too once there is room (the detail view has both).
  if (width >= 100) cols.push({ title: 'ROUTED', width: width >= 115 ? 30 : 24, value: (r) => routeLabel(r.raw as Fields) });
  if (width >= 140) cols.push({ title: 'RULE', width: 18, value: (r) => r.rule });
  if (width >= 140) cols.push({ title: 'REASON', width: 20, value: (r) => r.reason });
  cols.push({ title: 'ENTITIES', width: width >= 140 ? 16 : 8, value: (r) => r.entities });
  cols.push({ title: 'RED', width: 3, align: 'right', value: (r) => r.redactions });
  cols.push({ title: 'TOKENS', width: 9, align: 'right', value: (r) => r.tokens });
  cols.push({ title: 'TTFT', width: 6, align: 'right', value: (r) => r.ttft });
  if (width >= 100) cols.push({ title: 'TOTAL', width: 7, align: 'right', value: (r) => r.total });
  cols.push({ title: 'STATUS', width: 7, value: (r) => statusLabel(r.status) });
  return flex(cols, width - 2);
}

/** The router's outcomes, short enough for the column (the detail view has the full record). */
const STATUS_LABELS: Record<string, string> = {
  budget_exceeded: 'budget',
  budget_cut: 'cut:bdg',
  rate_limited: 'rate',
  no_route: 'noroute',
  unauthenticated: 'noauth',
  upstream_error: 'upstrm',
  client_abort: 'aborted',
  format_mismatch: 'format',
};

export function statusLabel(status: string): string {
  return STATUS_LABELS[status] ?? status;
}

function statusColor(theme: Theme, status: string): string | undefined {
  if (status === 'ok' || status === '200' || status === 'done') return undefined;
  if (status === 'routed') return theme.dim;
  return theme.deny;
}

export const InferencePane = memo(function InferencePane(props: InferencePaneProps) {
  const { rows, width, height, focused, selected, theme, filter, ascii } = props;
  const columns = columnsFor(width, ascii);
  const visible = Math.max(0, height - 2);
  const offset = scrollOffset(rows.length, selected, visible);
  const info = `${rows.length} calls${filter ? ` · /${filter}` : ''}`;
  return (
    <PaneFrame index={4} title="Inference" info={info} width={width} height={height} focused={focused} theme={theme}>
      <Text color={theme.dim} wrap="truncate">
        {'  ' + renderHeader(columns)}
      </Text>
      {rows.length === 0 ? <Text color={theme.dim}>  no inference calls yet</Text> : null}
      {rows.slice(offset, offset + visible).map((row, i) => {
        const isSelected = focused && offset + i === selected;
        return (
          <Line
            key={`${row.id}:${offset + i}`}
            text={(isSelected ? '› ' : '  ') + renderRow(columns, row)}
            selected={isSelected}
            color={statusColor(theme, row.status)}
          />
        );
      })}
    </PaneFrame>
  );
});
