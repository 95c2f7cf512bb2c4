import { Text } from 'ink';
import { gaugeBar, sparkline } from './glyphs.js';

export interface GaugeProps {
  /** 0..1, or undefined when unknown (an empty track). */
  fraction: number | undefined;
  width: number;
  ascii: boolean;
  color?: string | undefined;
}

/** A one-line bar. The caller always prints the number beside it. */
export function Gauge({ fraction, width, ascii, color }: GaugeProps) {
  const bar = gaugeBar(fraction, width, ascii);
  return <Text color={color}>{bar}</Text>;
}

export interface SparklineProps {
  values: readonly number[];
  width: number;
  ascii: boolean;
  max?: number | undefined;
  color?: string | undefined;
}

export function Sparkline({ values, width, ascii, max, color }: SparklineProps) {
  return <Text color={color}>{sparkline(values, width, ascii, max)}</Text>;
}
