import { memo, type ReactNode } from 'react';
import { Box, Text } from 'ink';
import { bytes, compactNumber, fit, money, percent } from '../format.js';
import { Gauge, Sparkline } from '../Gauge.js';
import type { MetersState } from '../store.js';
import type { Theme } from '../theme.js';
import { PaneFrame } from './PaneFrame.js';

export interface MetersPaneProps {
  meters: MetersState;
  width: number;
  height: number;
  focused: boolean;
  theme: Theme;
  ascii: boolean;
}

/** nvidia-smi reports MiB; accept bytes too (anything too large to be MiB on one GPU). */
function vram(n: number | undefined): number | undefined {
  if (n === undefined) return undefined;
  return n > 16 * 1024 * 1024 ? n : n * 1024 * 1024;
}

function gaugeColor(theme: Theme, fraction: number | undefined): string | undefined {
  if (fraction === undefined) return theme.dim;
  if (fraction >= 0.9) return theme.deny;
  if (fraction >= 0.7) return theme.warn;
  return theme.allow;
}

interface MeterLine {
  key: string;
  label: string;
  fraction: number | undefined;
  value: string;
  series?: readonly number[] | undefined;
  seriesMax?: number | undefined;
  alert?: boolean;
}

function lines(m: MetersState, compact: boolean, wide: boolean): MeterLine[] {
  const out: MeterLine[] = [];
  if (m.gpus.length === 0) out.push({ key: 'gpu', label: 'GPU', fraction: undefined, value: m.noGpu ? `none: ${m.noGpu}` : 'no samples' });
  for (const g of m.gpus) {
    const r = g.reading;
    const used = vram(r.memUsed);
    const total = vram(r.memTotal);
    const memFraction = used !== undefined && total ? used / total : undefined;
    if (compact) {
      out.push({
        key: `gpu${r.index}`,
        label: `GPU${r.index}`,
        fraction: r.util,
        value: `${percent(r.util)} m${percent(memFraction)}`,
        series: g.util,
        seriesMax: 1,
      });
      continue;
    }
    const extras = wide ? ` ${r.temp === undefined ? '-' : `${Math.round(r.temp)}°C`} ${r.power === undefined ? '-' : `${Math.round(r.power)}W`}` : '';
    out.push({ key: `gpu${r.index}`, label: `GPU${r.index}`, fraction: r.util, value: `${percent(r.util)}${extras}`, series: g.util, seriesMax: 1 });
    out.push({ key: `vram${r.index}`, label: `VRAM${r.index}`, fraction: memFraction, value: `${bytes(used)}/${bytes(total)}`, series: g.mem, seriesMax: 1 });
  }
  const p = m.proc;
  const cpuFraction = p?.cpu === undefined ? undefined : p.cpu / 100;
  const cpuText = p?.cpu === undefined ? '-' : `${Math.round(p.cpu)}%`;
  const ramText = p?.memLimit ? `${bytes(p.rss)}/${bytes(p.memLimit)}` : bytes(p?.rss);
  if (compact) {
    out.push({ key: 'cpu', label: 'CPU', fraction: cpuFraction, value: `${cpuText} ${ramText}`, series: m.cpu });
  } else {
    out.push({ key: 'cpu', label: 'CPU', fraction: cpuFraction, value: `${cpuText}${wide ? ` ${p?.pids ?? '-'} pids` : ''}`, series: m.cpu });
    out.push({ key: 'ram', label: 'RAM', fraction: p?.rss !== undefined && p.memLimit ? p.rss / p.memLimit : undefined, value: ramText, series: m.rss });
  }
  if (p?.diskMode !== undefined && !compact) {
    const limited = p.diskMode === 'loop' && p.diskLimit;
    const fraction = limited && p.diskUsed !== undefined ? p.diskUsed / p.diskLimit! : undefined;
    out.push({
      key: 'disk',
      label: 'DISK',
      fraction,
      value: limited ? `${bytes(p.diskUsed)}/${bytes(p.diskLimit)}` : "unlimited",
      alert: fraction !== undefined && fraction >= 0.99,
    });
  }
  const windows = m.budget?.windows ?? [];
  const capped = windows.filter((w) => w.tokensCap !== undefined || w.costCap !== undefined);
  const shownWindows = capped.length > 0 ? capped : windows.slice(0, 1);
  if (shownWindows.length === 0) out.push({ key: 'tok', label: 'TOKENS', fraction: undefined, value: 'no budget' });
  for (const w of wide ? shownWindows : shownWindows.slice(0, 1)) {
    const fraction = w.tokensCap ? (w.tokensUsed ?? 0) / w.tokensCap : w.costCap ? (w.costUsed ?? 0) / w.costCap : undefined;
    out.push({
      key: `tok:${w.window}`,
      label: 'TOKENS',
      fraction,
      value: `${compactNumber(w.tokensUsed)}/${compactNumber(w.tokensCap)} ${w.window}${m.budgetExceeded ? ' EXCEEDED' : ''}`,
      alert: Boolean(m.budgetExceeded),
    });
  }
  const first = shownWindows[0];
  if (compact) {
    const last = out[out.length - 1];
    if (last && last.key.startsWith('tok')) last.value = `${compactNumber(first?.tokensUsed)}/${compactNumber(first?.tokensCap)} ${compactNumber(m.budget?.tokensPerMin)}/m${m.budgetExceeded ? ' EXCEEDED' : ''}`;
    if (last && last.key.startsWith('tok')) last.series = m.tokensPerMin;
    return out;
  }
  out.push({
    key: 'rate',
    label: 'TOK/MIN',
    fraction: undefined,
    value: `${compactNumber(m.budget?.tokensPerMin)}/min ${money(first?.costUsed)}/${money(first?.costCap)}`,
    series: m.tokensPerMin,
  });
  return out;
}

export const MetersPane = memo(function MetersPane({ meters, width, height, focused, theme, ascii }: MetersPaneProps) {
  const visible = Math.max(0, height - 1);
  const wide = width >= 60;
  let rows = lines(meters, false, wide);
  if (rows.length > visible) rows = lines(meters, true, wide);
  let overflow = 0;
  if (rows.length > visible) {
    overflow = rows.length - visible + 1;
    rows = rows.slice(0, Math.max(0, visible - 1));
  }
  const inner = width - 1;
  const labelW = 8;
  const gaugeW = wide ? Math.min(24, Math.max(10, Math.floor(inner * 0.3))) : 8;
  const valueW = wide ? 20 : 17;
  const sparkW = Math.max(0, inner - labelW - gaugeW - valueW - 3);
  const children: ReactNode[] = rows.map((l) => (
    <Box key={l.key} width={width} height={1}>
      <Text wrap="truncate"> {fit(l.label, labelW - 1)}</Text>
      <Gauge fraction={l.fraction} width={gaugeW} ascii={ascii} color={l.alert ? theme.deny : gaugeColor(theme, l.fraction)} />
      <Text color={l.alert ? theme.deny : undefined} wrap="truncate">
        {' ' + fit(l.value, valueW) + ' '}
      </Text>
      {sparkW > 0 && l.series ? <Sparkline values={l.series} width={sparkW} ascii={ascii} max={l.seriesMax} color={theme.accent} /> : null}
    </Box>
  ));
  if (overflow > 0) children.push(<Text key="more" color={theme.dim}>{` +${overflow} more (widen the terminal)`}</Text>);
  return (
    <PaneFrame index={3} title="Meters" info={meters.budgetExceeded ? 'budget exceeded' : undefined} width={width} height={height} focused={focused} theme={theme}>
      {children}
    </PaneFrame>
  );
});
