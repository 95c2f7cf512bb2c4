/**
 * The scope chooser of `A` (always allow) and `D` (always deny): how long (once, 15 min, 1 h, until
 * restart, always), which programs (this binary or any), which hosts (this host:port, this host on
 * any port, or `*.its-domain`), then a summary of exactly the rule that will be written, which `y`
 * confirms. Each list is an ink-select-input (j/k or arrows, Enter, or the item's number).
 * A one-time decision writes no rule, so it skips the scope steps.
 */
import { Box, Text } from 'ink';
import SelectInput from 'ink-select-input';
import type { DecisionScope } from './client.js';
import { fit } from './format.js';
import type { HeldRow } from './selectors.js';
import type { Theme } from './theme.js';

/** `t:<ms>`: a time box of that many ms (the chooser's 15 min and 1 h, or `tui --time-boxes`). */
export type LastsChoice = 'once' | 'restart' | 'always' | `t:${number}`;
export type GrantStep = 'lasts' | 'binary' | 'host' | 'confirm';

export interface GrantDraft {
  allow: boolean;
  row: HeldRow;
  step: GrantStep;
  lasts?: LastsChoice;
  binary?: 'this' | 'any';
  host?: 'exact' | 'any_port' | 'domain';
}

/** The chooser's time boxes unless `tui --time-boxes` says otherwise. */
export const DEFAULT_TIME_BOXES_MS: readonly number[] = [15 * 60_000, 3_600_000];

/** 15 min, 1 h, 90 s, 2 d. */
export function boxWords(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000} d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${Math.round(ms / 1000)} s`;
}

const boxMs = (l: LastsChoice | undefined): number | undefined => (l !== undefined && l.startsWith('t:') ? Number(l.slice(2)) : undefined);

function lastsWords(l: LastsChoice): string {
  const ms = boxMs(l);
  if (ms !== undefined) return `for ${boxWords(ms)}`;
  return l === 'once' ? 'this once (no rule)' : l === 'restart' ? 'until the supervisor restarts' : 'always (until removed)';
}

/** `*.rest` for a name of three labels or more (as the supervisor computes it, egress/grant.ts). */
export function domainOf(host: string): string | undefined {
  if (/^[\d.]+$/.test(host) || host.includes(':') || host.includes('*')) return undefined;
  const labels = host.split('.');
  return labels.length >= 3 ? `*.${labels.slice(1).join('.')}` : undefined;
}

const knownBinary = (row: HeldRow): string | undefined => (row.binary.startsWith('/') ? row.binary : undefined);

/** The step after `draft.step` (once skips the scope; an unidentified binary skips "this binary"). */
export function nextStep(d: GrantDraft): GrantStep {
  if (d.step === 'lasts') return d.lasts === 'once' ? 'confirm' : knownBinary(d.row) ? 'binary' : 'host';
  if (d.step === 'binary') return 'host';
  return 'confirm';
}

/** The scope exactly as it will be written (the summary line, and what the TUI sends). */
export function grantSummary(d: GrantDraft): string {
  const verb = d.allow ? 'Allow' : 'Deny';
  if (d.lasts === 'once') return `${verb} ${d.row.host}:${d.row.port} this once (no rule is written)`;
  const bin = d.binary === 'this' ? knownBinary(d.row) : undefined;
  const target = d.host === 'any_port' ? `${d.row.host}, any port` : d.host === 'domain' ? `${domainOf(d.row.host) ?? d.row.host}:${d.row.port}` : `${d.row.host}:${d.row.port}`;
  return `${verb} ${target}, ${bin ? `only ${bin}` : 'any binary'}, ${lastsWords(d.lasts ?? 'always')}`;
}

/** The decision and scope the TUI sends for a finished draft. */
export function grantDecision(d: GrantDraft): { decision: 'once' | 'session' | 'always' | 'deny' | 'deny_always'; scope: DecisionScope } {
  const lasts = d.lasts ?? 'once';
  if (lasts === 'once') return { decision: d.allow ? 'once' : 'deny', scope: {} };
  const scope: DecisionScope = { binary: d.binary ?? 'any', host: d.host ?? 'exact' };
  if (lasts === 'restart') {
    if (!d.allow) scope.session = true;
    return { decision: d.allow ? 'session' : 'deny_always', scope };
  }
  const ms = boxMs(lasts);
  if (ms !== undefined) scope.duration_ms = ms;
  return { decision: d.allow ? 'always' : 'deny_always', scope };
}

interface Item {
  label: string;
  value: string;
}

export function stepItems(d: GrantDraft, timeBoxes: readonly number[] = DEFAULT_TIME_BOXES_MS): Item[] {
  const r = d.row;
  if (d.step === 'lasts') {
    const values: LastsChoice[] = ['once', ...timeBoxes.map((ms): LastsChoice => `t:${ms}`), 'restart', 'always'];
    return values.map((v, i) => ({ label: `${i + 1} ${lastsWords(v)}`, value: v }));
  }
  if (d.step === 'binary') {
    return [
      { label: `1 this binary: ${knownBinary(r) ?? '?'}`, value: 'this' },
      { label: '2 any binary', value: 'any' },
    ];
  }
  const items: Item[] = [
    { label: `1 this host:port: ${r.host}:${r.port}`, value: 'exact' },
    { label: `2 this host, any port: ${r.host}`, value: 'any_port' },
  ];
  const dom = domainOf(r.host);
  if (dom) items.push({ label: `3 every host one label under ${dom.slice(2)}: ${dom}:${r.port}`, value: 'domain' });
  return items;
}

const STEP_TITLES: Record<Exclude<GrantStep, 'confirm'>, string> = { lasts: 'How long?', binary: 'Which programs?', host: 'Which hosts?' };

export interface ScopeChooserProps {
  width: number;
  height: number;
  theme: Theme;
  draft: GrantDraft;
  /** The time boxes offered after "once" (ms; `tui --time-boxes`). */
  timeBoxes?: readonly number[] | undefined;
  onPick(value: string): void;
}

export function ScopeChooser({ width, height, theme, draft, timeBoxes, onPick }: ScopeChooserProps) {
  const r = draft.row;
  const title = ` ${draft.allow ? 'Always allow' : 'Always deny'} ${r.host}:${r.port}?`;
  const request = ` Request: ${r.method} ${r.path}${knownBinary(r) ? ` from ${r.binary}` : ''}`;
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden" borderStyle="round" borderColor={theme.warn}>
      <Text bold color={theme.warn} wrap="truncate">
        {title}
      </Text>
      <Text wrap="wrap">{request}</Text>
      {draft.step === 'confirm' ? (
        <>
          <Text wrap="wrap" bold>
            {' ' + grantSummary(draft)} — exactly this.
          </Text>
          {draft.lasts !== 'once' && draft.binary === 'this' ? (
            <Text wrap="wrap" color={theme.dim}>
              {' The binary is as reported by /proc, not proven: any process of the sandbox uid can pass it a socket.'}
            </Text>
          ) : null}
          {draft.lasts !== 'once' && draft.lasts !== 'restart' ? <Text wrap="wrap"> Written to the operator overlay: a new policy revision; `r` lists and removes it.</Text> : null}
          {boxMs(draft.lasts) !== undefined ? <Text wrap="wrap"> It ends by itself (connections it let through end too).</Text> : null}
          <Text> </Text>
          <Text bold wrap="truncate">
            {fit(`[y] ${draft.allow ? 'allow' : 'deny'} exactly this  [n] / Esc cancel`, Math.max(1, width - 2))}
          </Text>
        </>
      ) : (
        <>
          <Text bold wrap="truncate">{` ${STEP_TITLES[draft.step]}`}</Text>
          {draft.lasts !== undefined ? <Text color={theme.dim} wrap="truncate">{` so far: ${lastsWords(draft.lasts)}${draft.binary ? `, ${draft.binary === 'this' ? 'this binary' : 'any binary'}` : ''}`}</Text> : null}
          <SelectInput key={draft.step} items={stepItems(draft, timeBoxes)} onSelect={(item) => onPick(item.value)} indicatorComponent={Pointer} />
        </>
      )}
    </Box>
  );
}

/** The cursor mark the rest of the TUI uses (`›`), not a glyph the terminal may lack. */
function Pointer({ isSelected = false }: { isSelected?: boolean }) {
  return <Text>{isSelected ? '› ' : '  '}</Text>;
}
