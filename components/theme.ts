/** Two palettes; with NO_COLOR (FORCE_COLOR=0) every colour drops out and markers carry the meaning. */
export interface Theme {
  name: 'dark' | 'light';
  accent: string;
  held: string;
  allow: string;
  deny: string;
  dim: string;
  warn: string;
  text: string | undefined;
}

export const THEMES: Record<'dark' | 'light', Theme> = {
  dark: { name: 'dark', accent: 'cyan', held: 'yellow', allow: 'green', deny: 'red', dim: 'gray', warn: 'yellow', text: undefined },
  light: { name: 'light', accent: 'blue', held: 'magenta', allow: 'green', deny: 'red', dim: 'gray', warn: 'magenta', text: 'black' },
};

export function verdictColor(theme: Theme, verdict: string): string | undefined {
  const v = verdict.toLowerCase();
  if (v.startsWith('deny') || v === 'denied' || v === 'blocked' || v === 'timeout') return theme.deny;
  if (v.startsWith('allow') || v.startsWith('approve') || v === 'once' || v === 'session' || v === 'always') return theme.allow;
  if (v === 'failed') return theme.warn;
  return undefined;
}
