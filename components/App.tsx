/**
 * The root of the TUI: header, panes, footer, and ONE key dispatcher that switches on the mode
 * (normal, filter, confirm, help, detail, policy). Decisions are only ever taken by a plain
 * letter in normal mode (or `y` / Enter in a confirmation); Esc and Alt-modified keys never decide.
 *
 * Keys read together (`jj`, `j⏎`, a held-down key over SSH) are split and handled one by one, each
 * against the state the previous one left (a queue drained one key per render).
 *
 * The Network cursor follows a request, not a row position: it stays on the same row (by id) as
 * rows arrive and leave. When its request leaves (decided here or elsewhere, timed out), the cursor
 * moves to the row now at its place, and a decision key acts only on the request the operator last
 * saw under the cursor: the first key after such a move only says "selection changed — press again".
 */
import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import { Box, Text, useApp, useInput, usePaste, useWindowSize, type Key } from 'ink';
import type { ApprovalDecision, DecisionScope, PolicyView, TuiClient } from './client.js';
import { compactNumber, duration, fit } from './format.js';
import { splitKeys, type KeyPress } from './keys.js';
import { computeLayout, isTooSmall, MIN_COLUMNS, MIN_ROWS, PANE_IDS, PANE_TITLES, type PaneId } from './layout.js';
import { AgentPane } from './panes/AgentPane.js';
import { FilesystemPane } from './panes/FilesystemPane.js';
import { InferencePane } from './panes/InferencePane.js';
import { MetersPane } from './panes/MetersPane.js';
import { NetworkPane, type NetworkItem } from './panes/NetworkPane.js';
import type { HeldRow } from './selectors.js';
import type { TuiState, TuiStore } from './store.js';
import type { TerminalSignals } from './terminal-signals.js';
import { THEMES, type Theme } from './theme.js';
import { useSupervisorFeed } from './useSupervisorFeed.js';
import { ConfirmView, HelpView, ScrollView, TooSmallView } from './views.js';
import { ruleRows, RulesView, ruleSummary, type RuleRow } from './RulesView.js';
import { grantDecision, grantSummary, nextStep, ScopeChooser, type GrantDraft } from './ScopeChooser.js';

export interface AppProps {
  client: TuiClient;
  store: TuiStore;
  ascii: boolean;
  theme: 'dark' | 'light';
  /** Shown in the header when attached through `--host`. */
  host?: string | undefined;
  /** Wall clock (tests pin it so ages and uptime are stable). */
  now?: () => number;
  /** Called once when the operator detaches (q / Ctrl-C). */
  onDetach?: () => void;
  /** Bell, window title and desktop notifications for held requests (run.ts writes them to the terminal). */
  signals?: TerminalSignals;
  /** The scope chooser's time boxes in ms (`tui --time-boxes`; default 15 min and 1 h). */
  timeBoxes?: readonly number[] | undefined;
}

/** The longest deny reason the dialog takes (the supervisor keeps at most 200 characters). */
const MAX_REASON = 200;

type Confirm =
  | { kind: 'always'; row: HeldRow }
  | { kind: 'deny'; row: HeldRow; always: boolean; reason: string }
  | { kind: 'detach'; held: number }
  /** The kill switch: a reason field like the deny dialog's; Enter quarantines, Esc cancels. */
  | { kind: 'quarantine'; reason: string }
  | { kind: 'budget' };

type Mode =
  | { kind: 'normal' }
  | { kind: 'filter'; draft: string }
  | { kind: 'help' }
  | { kind: 'confirm'; confirm: Confirm }
  | { kind: 'detail'; title: string; lines: string[]; scroll: number; held: HeldRow | undefined }
  | { kind: 'policy'; view: PolicyView | undefined; error: string | undefined; scroll: number }
  /** A / D: the scope chooser (ScopeChooser.tsx), step by step, then `y` on its summary. */
  | { kind: 'grant'; draft: GrantDraft }
  /** `confirm`: the rule `x` asked to remove (y removes it, n / Esc keeps it). */
  | { kind: 'rules'; rules: RuleRow[] | undefined; error: string | undefined; cursor: number; confirm: RuleRow | undefined };

const DECISION_KEYS: Record<string, { decision: ApprovalDecision; label: string }> = {
  a: { decision: 'once', label: 'approved once' },
  s: { decision: 'session', label: 'approved for this session' },
};

/** The Network cursor's identity for an item: the pending id of a held row, the row key otherwise. */
function itemKey(item: NetworkItem): string {
  return item.type === 'held' ? `h:${item.row.id}` : item.row.key;
}

/** Typed text for a field: printable characters only (no escape sequences into the reason). */
function typed(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028-\u202e\u2066-\u2069]/g, ' ');
}

const PANE_HINTS: Record<PaneId, string> = {
  network: 'a approve  s session  A always  d deny  D always-deny  ⏎ detail  / filter  p policy  r rules  ? help  q detach',
  filesystem: 'j/k move  g/G newest/oldest  ⏎ detail  / filter  Tab next pane  ? help  q detach',
  meters: 'b raise budget  p policy  Tab next pane  1-5 panes  ? help  q detach',
  inference: 'j/k move  ⏎ detail  / filter  b raise budget  Tab next pane  ? help  q detach',
  agent: 'j/k move  g/G newest/oldest  / filter  Tab next pane  ? help  q detach',
};

function rowText(...parts: unknown[]): string {
  return parts.map((p) => (typeof p === 'string' ? p : '')).join(' ').toLowerCase();
}

function describeRecord(raw: Record<string, unknown>): string[] {
  const first = ['kind', 'ts', 'seq', 'id', 'level', 'host', 'port', 'binary', 'method', 'path'];
  const keys = [...first.filter((k) => k in raw), ...Object.keys(raw).filter((k) => !first.includes(k) && k !== 'prev_hash' && k !== 'hash').sort()];
  const out: string[] = [];
  for (const k of keys) {
    const v = raw[k];
    const text = typeof v === 'string' ? v : JSON.stringify(v, null, 2) ?? String(v);
    const [head, ...rest] = text.split('\n');
    out.push(`${k.padEnd(16)} ${head ?? ''}`);
    for (const line of rest) out.push(`${' '.repeat(17)}${line}`);
  }
  return out;
}

function errorText(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { message?: unknown; nextStep?: unknown };
    const msg = typeof e.message === 'string' ? e.message : String(err);
    return typeof e.nextStep === 'string' ? `${msg} (${e.nextStep})` : msg;
  }
  return String(err);
}

function matches(filter: string, text: string): boolean {
  return filter === '' || text.includes(filter.toLowerCase());
}

function useFilteredLists(state: TuiState, filters: Record<PaneId, string>) {
  const { network, filesystem, inference, agent } = state;
  const fNet = filters.network;
  const networkItems = useMemo<NetworkItem[]>(() => {
    const held: NetworkItem[] = network.held
      .filter((r) => matches(fNet, rowText(r.host, r.port, r.binary, r.method, r.path, 'held')))
      .map((row) => ({ type: 'held', row }));
    const history: NetworkItem[] = network.history
      .filter((r) => matches(fNet, rowText(r.host, r.port, r.binary, r.method, r.path, r.verdict, r.rule, r.reason)))
      .map((row) => ({ type: 'history', row }));
    return held.concat(history);
  }, [network, fNet]);
  const fsRows = useMemo(
    () => filesystem.filter((r) => matches(filters.filesystem, rowText(r.binary, r.syscall, r.path, r.rule, r.errno))),
    [filesystem, filters.filesystem],
  );
  const infRows = useMemo(
    () => inference.filter((r) => matches(filters.inference, rowText(r.requested, r.provider, r.model, r.rule, r.status, r.entities))),
    [inference, filters.inference],
  );
  const agentRows = useMemo(() => agent.filter((r) => matches(filters.agent, rowText(r.stream, r.line))), [agent, filters.agent]);
  return { networkItems, fsRows, infRows, agentRows };
}

export function App({ client, store, ascii, theme: themeName, host, now: nowFn = Date.now, onDetach, signals, timeBoxes }: AppProps) {
  const { exit } = useApp();
  const { columns, rows } = useWindowSize();
  const theme: Theme = THEMES[themeName];
  const state = useSyncExternalStore(store.subscribe, store.getSnapshot);
  const [focus, setFocus] = useState<PaneId>('network');
  const [selected, setSelected] = useState<Record<PaneId, number>>({ network: 0, filesystem: 0, meters: 0, inference: 0, agent: 0 });
  const [filters, setFilters] = useState<Record<PaneId, string>>({ network: '', filesystem: '', meters: '', inference: '', agent: '' });
  const [mode, setMode] = useState<Mode>({ kind: 'normal' });
  const [flash, setFlash] = useState<{ text: string; bad: boolean } | undefined>(undefined);
  const [now, setNow] = useState(nowFn);
  const detached = useRef(false);
  /** The Network cursor: the item it is on (by key) and, when that item left, where it was. */
  const [netCursor, setNetCursor] = useState<{ key: string | undefined; index: number }>({ key: undefined, index: 0 });
  /** The key the operator last saw under the Network cursor (moved there, or was told it changed). */
  const seenKey = useRef<string | undefined>(undefined);
  /** Keys not handled yet (one per render), with the read they came in. */
  const keyQueue = useRef<Array<KeyPress & { chunk: number }>>([]);
  const chunkSeq = useRef(0);
  const currentChunk = useRef(0);
  /** A read after whose decision (or "selection changed") no further decision key of it acts. */
  const decidedChunk = useRef(-1);
  const [inputTick, setInputTick] = useState(0);
  /** Pending ids whose decision is on its way (a repeated key must not send it twice). */
  const inFlight = useRef(new Set<string>());

  const refresh = useSupervisorFeed(client, store);

  // Ages and uptime tick once a second; that is the only timer-driven render.
  useEffect(() => {
    const t = setInterval(() => setNow(nowFn()), 1000);
    return () => clearInterval(t);
  }, [nowFn]);

  useEffect(() => {
    if (!flash) return;
    const t = setTimeout(() => setFlash(undefined), 5000);
    return () => clearTimeout(t);
  }, [flash]);

  const lists = useFilteredLists(state, filters);
  const counts: Record<PaneId, number> = {
    network: lists.networkItems.length,
    filesystem: lists.fsRows.length,
    meters: 0,
    inference: lists.infRows.length,
    agent: lists.agentRows.length,
  };
  const netItems = lists.networkItems;
  const netIndex = useMemo(() => {
    const found = netCursor.key === undefined ? -1 : netItems.findIndex((it) => itemKey(it) === netCursor.key);
    return found >= 0 ? found : Math.max(0, Math.min(netCursor.index, netItems.length - 1));
  }, [netItems, netCursor]);
  const sel = (id: PaneId) => (id === 'network' ? netIndex : Math.max(0, Math.min(selected[id], Math.max(0, counts[id] - 1))));
  const selectedNetwork = netItems[netIndex];
  const selectedKey = selectedNetwork ? itemKey(selectedNetwork) : undefined;
  const cursorHeld = selectedNetwork?.type === 'held' ? selectedNetwork.row : undefined;
  const selectedHeld = focus === 'network' ? cursorHeld : undefined;

  // Keep the cursor on the item it now shows. A cursor that was on nothing takes the first row that
  // appears as seen (nothing was swapped under it); one whose request left does not.
  useEffect(() => {
    if (selectedKey === netCursor.key && netIndex === netCursor.index) return;
    if (netCursor.key === undefined && selectedKey !== undefined) seenKey.current = selectedKey;
    if (selectedKey === undefined) seenKey.current = undefined;
    setNetCursor({ key: selectedKey, index: netIndex });
  }, [selectedKey, netIndex, netCursor]);

  // Bell, window title and notifications follow the held list; the title is given back on unmount.
  useEffect(() => {
    signals?.update(state.network.held);
  }, [signals, state.network.held]);
  useEffect(() => () => signals?.restore(), [signals]);

  const detach = useCallback(() => {
    if (detached.current) return;
    detached.current = true;
    onDetach?.();
    exit();
  }, [exit, onDetach]);

  const decide = useCallback(
    (row: HeldRow, decision: ApprovalDecision, label: string, reason?: string, scope?: DecisionScope) => {
      if (inFlight.current.has(row.id)) return;
      inFlight.current.add(row.id);
      decidedChunk.current = currentChunk.current;
      const words = reason?.trim() ? reason.trim() : undefined;
      client.decide(row.id, decision, words, scope).then(
        () => {
          inFlight.current.delete(row.id);
          store.resolvePending(row.id);
          setFlash({ text: `${label}: ${row.host}:${row.port}${words ? ` (reason: ${words})` : ''}`, bad: false });
          refresh();
        },
        (err: unknown) => {
          inFlight.current.delete(row.id);
          setFlash({ text: `could not record "${label}" for ${row.host}:${row.port}: ${errorText(err)}`, bad: true });
        },
      );
    },
    [client, store, refresh],
  );

  const raiseBudget = useCallback(() => {
    client.raiseBudget().then(
      (what) => {
        setFlash({ text: what, bad: false });
        refresh();
      },
      (err: unknown) => setFlash({ text: `could not raise the budget: ${errorText(err)}`, bad: true }),
    );
  }, [client, refresh]);

  const openPolicy = useCallback(() => {
    setMode({ kind: 'policy', view: undefined, error: undefined, scroll: 0 });
    client.policy().then(
      (view) => setMode((m) => (m.kind === 'policy' ? { ...m, view } : m)),
      (err: unknown) => setMode((m) => (m.kind === 'policy' ? { ...m, error: errorText(err) } : m)),
    );
  }, [client]);

  const openRules = useCallback(
    (cursor = 0) => {
      setMode((m) => (m.kind === 'rules' ? { ...m, confirm: undefined } : { kind: 'rules', rules: undefined, error: undefined, cursor, confirm: undefined }));
      client.rules().then(
        (raw) => setMode((m) => (m.kind === 'rules' ? { ...m, rules: ruleRows(raw), error: undefined } : m)),
        (err: unknown) => setMode((m) => (m.kind === 'rules' ? { ...m, error: errorText(err) } : m)),
      );
    },
    [client],
  );

  const removeRule = useCallback(
    (rule: RuleRow) => {
      client.removeRule(rule.id).then(
        (what) => {
          setFlash({ text: what, bad: false });
          openRules();
          refresh();
        },
        (err: unknown) => setFlash({ text: `could not remove ${rule.id}: ${errorText(err)}`, bad: true }),
      );
    },
    [client, openRules, refresh],
  );

  /** The scope chooser's pick for its current step: record it, go on to the next step. */
  const pickGrant = (value: string) => {
    setMode((m) => {
      if (m.kind !== 'grant' || m.draft.step === 'confirm') return m;
      const d = { ...m.draft };
      if (d.step === 'lasts') d.lasts = value as GrantDraft['lasts'];
      else if (d.step === 'binary') d.binary = value as GrantDraft['binary'];
      else d.host = value as GrantDraft['host'];
      return { kind: 'grant', draft: { ...d, step: nextStep(d) } };
    });
  };

  const openDetail = () => {
    if (focus === 'network' && selectedNetwork) {
      const raw = selectedNetwork.row.raw;
      const held = selectedNetwork.type === 'held' ? selectedNetwork.row : undefined;
      const title = held ? `Held request ${held.host}:${held.port} (a/s/A/d/D decide, Esc back)` : `Network ${selectedNetwork.row.host}:${selectedNetwork.row.port}`;
      setMode({ kind: 'detail', title, lines: describeRecord(raw), scroll: 0, held });
      return;
    }
    const pick =
      focus === 'filesystem' ? lists.fsRows[sel('filesystem')] : focus === 'inference' ? lists.infRows[sel('inference')] : focus === 'agent' ? lists.agentRows[sel('agent')] : undefined;
    if (pick) setMode({ kind: 'detail', title: `${PANE_TITLES[focus]} detail`, lines: describeRecord(pick.raw), scroll: 0, held: undefined });
  };

  const moveSelection = (delta: number | 'top' | 'bottom', pane: PaneId = focus) => {
    if (pane === 'network') {
      const max = Math.max(0, netItems.length - 1);
      const next = delta === 'top' ? 0 : delta === 'bottom' ? max : Math.max(0, Math.min(max, netIndex + delta));
      const item = netItems[next];
      const key = item ? itemKey(item) : undefined;
      // The operator moved: what is under the cursor now is what they look at.
      seenKey.current = key;
      setNetCursor({ key, index: next });
      return;
    }
    setSelected((s) => {
      const max = Math.max(0, counts[focus] - 1);
      const cur = Math.min(s[focus], max);
      const next = delta === 'top' ? 0 : delta === 'bottom' ? max : Math.max(0, Math.min(max, cur + delta));
      return { ...s, [focus]: next };
    });
  };

  const cycleFocus = (step: number) => {
    const i = PANE_IDS.indexOf(focus);
    setFocus(PANE_IDS[(i + step + PANE_IDS.length) % PANE_IDS.length]!);
  };

  const askDetach = () => {
    const held = state.network.held.length;
    if (held > 0) setMode({ kind: 'confirm', confirm: { kind: 'detach', held } });
    else detach();
  };

  /**
   * a / s / A / d / D. `checkSeen`: on the Network cursor, act only on the request the operator last
   * saw there (the detail view shows its own request, so it does not check).
   */
  const onDecisionKey = (input: string, held: HeldRow | undefined, checkSeen: boolean): boolean => {
    const d = DECISION_KEYS[input];
    if (!d && input !== 'A' && input !== 'd' && input !== 'D') return false;
    // One decision per read: a repeated or typed-ahead key never runs on into the next request.
    if (decidedChunk.current === currentChunk.current) return true;
    if (!held) {
      setFlash({ text: 'select a held request first (Network pane, top rows)', bad: true });
      return true;
    }
    if (inFlight.current.has(held.id)) return true;
    if (!state.network.held.some((r) => r.id === held.id)) {
      setFlash({ text: `${held.host}:${held.port} was already decided (or timed out)`, bad: true });
      setMode({ kind: 'normal' });
      return true;
    }
    if (checkSeen && seenKey.current !== `h:${held.id}`) {
      // The row under the cursor changed without the operator moving it: show it, act next time.
      seenKey.current = `h:${held.id}`;
      decidedChunk.current = currentChunk.current;
      setFlash({ text: `selection changed — now ${held.host}:${held.port}; press ${input} again`, bad: true });
      return true;
    }
    if (input === 'A' || input === 'D') {
      // The chooser needs room for its lists; the small screen keeps a / s / d.
      if (isTooSmall(columns, rows)) setFlash({ text: `${input} opens the scope chooser, which needs a larger terminal; a once, s session, d deny work here`, bad: true });
      else setMode({ kind: 'grant', draft: { allow: input === 'A', row: held, step: 'lasts' } });
    } else if (input === 'd') setMode({ kind: 'confirm', confirm: { kind: 'deny', row: held, always: false, reason: '' } });
    else if (d) {
      decide(held, d.decision, d.label);
      setMode({ kind: 'normal' });
    }
    return true;
  };

  type Scrollable = Extract<Mode, { scroll: number }>;
  const scrollBy = (m: Scrollable, input: string, key: Key, total: number) => {
    const page = Math.max(1, rows - 4);
    let scroll = m.scroll;
    if (input === 'j' || key.downArrow) scroll += 1;
    else if (input === 'k' || key.upArrow) scroll -= 1;
    else if (key.pageDown || input === ' ') scroll += page;
    else if (key.pageUp) scroll -= page;
    else if (input === 'g') scroll = 0;
    else if (input === 'G') scroll = total;
    else return;
    setMode({ ...m, scroll: Math.max(0, Math.min(scroll, Math.max(0, total - 1))) });
  };

  /** False (and says so) when the request was decided elsewhere or timed out while a dialog was open. */
  const stillHeld = (row: HeldRow): boolean => {
    if (state.network.held.some((r) => r.id === row.id)) return true;
    setFlash({ text: `${row.host}:${row.port} was decided elsewhere or timed out meanwhile; nothing sent`, bad: true });
    return false;
  };

  const handleKey = (input: string, key: Key) => {
    const ctrlC = key.ctrl && input === 'c';
    switch (mode.kind) {
      case 'help':
        if (key.escape || input === '?' || input === 'q') setMode({ kind: 'normal' });
        else if (ctrlC) askDetach();
        return;
      case 'confirm': {
        const c = mode.confirm;
        if (c.kind === 'quarantine') {
          if (key.escape || ctrlC) setMode({ kind: 'normal' });
          else if (key.return) {
            if (decidedChunk.current === currentChunk.current) return;
            setMode({ kind: 'normal' });
            const words = c.reason.trim() || undefined;
            client.quarantine(words).then(
              (what) => {
                setFlash({ text: what, bad: true });
                refresh();
              },
              (err: unknown) => setFlash({ text: `could not quarantine: ${errorText(err)}`, bad: true }),
            );
          } else if (key.backspace || key.delete) setMode({ kind: 'confirm', confirm: { ...c, reason: Array.from(c.reason).slice(0, -1).join('') } });
          else if (key.ctrl && input === 'u') setMode({ kind: 'confirm', confirm: { ...c, reason: '' } });
          else if (input && !key.ctrl && !key.meta && !key.tab) setMode({ kind: 'confirm', confirm: { ...c, reason: Array.from(c.reason + typed(input)).slice(0, MAX_REASON).join('') } });
          return;
        }
        if (c.kind === 'deny') {
          // A small text field: the reason is optional, Enter denies, Esc (or Ctrl-C) cancels.
          if (key.escape || ctrlC) setMode({ kind: 'normal' });
          else if (key.return) {
            if (decidedChunk.current === currentChunk.current) return;
            setMode({ kind: 'normal' });
            if (!stillHeld(c.row)) return;
            decide(c.row, c.always ? 'deny_always' : 'deny', c.always ? 'always denied' : 'denied', c.reason);
          } else if (key.backspace || key.delete) setMode({ kind: 'confirm', confirm: { ...c, reason: Array.from(c.reason).slice(0, -1).join('') } });
          else if (key.ctrl && input === 'u') setMode({ kind: 'confirm', confirm: { ...c, reason: '' } });
          else if (input && !key.ctrl && !key.meta && !key.tab) {
            setMode({ kind: 'confirm', confirm: { ...c, reason: Array.from(c.reason + typed(input)).slice(0, MAX_REASON).join('') } });
          }
          return;
        }
        if (key.escape || input === 'n' || input === 'N') {
          setMode({ kind: 'normal' });
          return;
        }
        // Ctrl-C twice detaches, as a second Ctrl-C does in most programs.
        const yes = !key.meta && (input === 'y' || input === 'Y' || key.return);
        if (c.kind === 'detach' && (yes || ctrlC)) {
          detach();
          return;
        }
        if (!yes) return;
        if (c.kind === 'always' && decidedChunk.current === currentChunk.current) return;
        setMode({ kind: 'normal' });
        if (c.kind === 'always') {
          if (stillHeld(c.row)) decide(c.row, 'always', 'always allowed');
        } else if (c.kind === 'budget') raiseBudget();
        return;
      }
      case 'filter': {
        if (key.escape) {
          setFilters((f) => ({ ...f, [focus]: '' }));
          setMode({ kind: 'normal' });
        } else if (key.return) {
          setMode({ kind: 'normal' });
        } else if (key.backspace || key.delete) {
          const draft = mode.draft.slice(0, -1);
          setMode({ kind: 'filter', draft });
          setFilters((f) => ({ ...f, [focus]: draft }));
        } else if (ctrlC) {
          askDetach();
        } else if (input && !key.ctrl && !key.meta && !key.tab) {
          const draft = mode.draft + input;
          setMode({ kind: 'filter', draft });
          setFilters((f) => ({ ...f, [focus]: draft }));
          setSelected((s) => ({ ...s, [focus]: 0 }));
          if (focus === 'network') setNetCursor({ key: undefined, index: 0 });
        }
        return;
      }
      case 'detail':
        if (key.escape || input === 'q') setMode({ kind: 'normal' });
        else if (ctrlC) askDetach();
        else if (!key.meta && mode.held && onDecisionKey(input, mode.held, false)) return;
        else scrollBy(mode, input, key, mode.lines.length);
        return;
      case 'policy': {
        if (key.escape || input === 'q' || input === 'p') setMode({ kind: 'normal' });
        else if (ctrlC) askDetach();
        else scrollBy(mode, input, key, policyLines(mode.view).length);
        return;
      }
      case 'grant': {
        const d = mode.draft;
        if (key.escape || ctrlC || (d.step === 'confirm' && (input === 'n' || input === 'N'))) {
          setMode({ kind: 'normal' });
          return;
        }
        // The lists take j/k, arrows, Enter and numbers themselves (ink-select-input); only the
        // summary's `y` decides, and never in the read that brought the summary up.
        if (d.step !== 'confirm' || key.meta || (input !== 'y' && input !== 'Y')) return;
        if (decidedChunk.current === currentChunk.current) return;
        setMode({ kind: 'normal' });
        if (!stillHeld(d.row)) return;
        const { decision, scope } = grantDecision(d);
        decide(d.row, decision, `${d.allow ? 'allowed' : 'denied'} (${grantSummary(d).replace(/^(Allow|Deny) /, '')})`, undefined, scope);
        return;
      }
      case 'rules': {
        if (mode.confirm) {
          const yes = !key.meta && (input === 'y' || input === 'Y' || key.return);
          if (yes) removeRule(mode.confirm);
          if (yes || key.escape || input === 'n' || input === 'N' || ctrlC) setMode({ ...mode, confirm: undefined });
          return;
        }
        const count = mode.rules?.length ?? 0;
        if (key.escape || input === 'q' || input === 'r') setMode({ kind: 'normal' });
        else if (ctrlC) askDetach();
        else if (input === 'j' || key.downArrow) setMode({ ...mode, cursor: Math.min(Math.max(0, count - 1), mode.cursor + 1) });
        else if (input === 'k' || key.upArrow) setMode({ ...mode, cursor: Math.max(0, mode.cursor - 1) });
        else if (input === 'g' || key.home) setMode({ ...mode, cursor: 0 });
        else if (input === 'G' || key.end) setMode({ ...mode, cursor: Math.max(0, count - 1) });
        else if ((input === 'x' || key.delete) && !key.meta) {
          const rule = mode.rules?.[Math.min(mode.cursor, count - 1)];
          if (rule) setMode({ ...mode, confirm: rule });
          else setFlash({ text: 'no rule to remove', bad: true });
        }
        return;
      }
      case 'normal':
        break;
    }
    if (ctrlC || (input === 'q' && !key.meta)) {
      askDetach();
      return;
    }
    if (isTooSmall(columns, rows)) {
      // The small screen still shows the held count and the request under the Network cursor:
      // j/k pick one, the decision keys decide it.
      if (key.meta) return;
      if (input === 'j' || key.downArrow) return moveSelection(1, 'network');
      if (input === 'k' || key.upArrow) return moveSelection(-1, 'network');
      if (input === 'g' || key.home) return moveSelection('top', 'network');
      if (input === 'G' || key.end) return moveSelection('bottom', 'network');
      onDecisionKey(input, cursorHeld, true);
      return;
    }
    if (key.escape) {
      if (filters[focus]) setFilters((f) => ({ ...f, [focus]: '' }));
      return;
    }
    // Alt-modified keys arrive as ESC + key; they never act (no decision on Esc or Alt).
    if (key.meta) return;
    if (key.tab) {
      cycleFocus(key.shift ? -1 : 1);
      return;
    }
    if (/^[1-5]$/.test(input)) {
      setFocus(PANE_IDS[Number(input) - 1]!);
      return;
    }
    if (input === 'j' || key.downArrow) return moveSelection(1);
    if (input === 'k' || key.upArrow) return moveSelection(-1);
    if (key.pageDown) return moveSelection(Math.max(1, rows - 6));
    if (key.pageUp) return moveSelection(-Math.max(1, rows - 6));
    if (input === 'g' || key.home) return moveSelection('top');
    if (input === 'G' || key.end) return moveSelection('bottom');
    if (key.return) return openDetail();
    if (input === '/') {
      if (focus !== 'meters') setMode({ kind: 'filter', draft: filters[focus] });
      return;
    }
    if (input === '?') return setMode({ kind: 'help' });
    if (input === 'p') return openPolicy();
    if (input === 'r') return openRules();
    if (input === 'Q') {
      // The key itself never acts: it opens a dialog, and the chunk it came in cannot confirm it.
      decidedChunk.current = currentChunk.current;
      return setMode({ kind: 'confirm', confirm: { kind: 'quarantine', reason: '' } });
    }
    if (input === 'b') return setMode({ kind: 'confirm', confirm: { kind: 'budget' } });
    if (focus === 'network' && onDecisionKey(input, selectedHeld, true)) return;
  };

  useInput((input, key) => {
    const chunk = ++chunkSeq.current;
    for (const k of splitKeys(input, key)) keyQueue.current.push({ ...k, chunk });
    setInputTick((t) => t + 1);
  });

  // One key per render: each one sees the mode, cursor and lists the previous one left.
  useEffect(() => {
    const next = keyQueue.current.shift();
    if (!next) return;
    currentChunk.current = next.chunk;
    handleKey(next.input, next.key);
    if (keyQueue.current.length > 0) setInputTick((t) => t + 1);
  }, [inputTick]); // eslint-disable-line react-hooks/exhaustive-deps

  // Bracketed paste: text for the filter or the deny reason; never keys (a paste must not decide).
  usePaste((text) => {
    if (mode.kind === 'filter') {
      const draft = mode.draft + typed(text);
      setMode({ kind: 'filter', draft });
      setFilters((f) => ({ ...f, [focus]: draft }));
    } else if (mode.kind === 'confirm' && (mode.confirm.kind === 'deny' || mode.confirm.kind === 'quarantine')) {
      const c = mode.confirm;
      setMode({ kind: 'confirm', confirm: { ...c, reason: Array.from(c.reason + typed(text)).slice(0, MAX_REASON).join('') } });
    } else {
      setFlash({ text: 'pasted text ignored (paste into / filter or a deny reason)', bad: true });
    }
  });

  if (isTooSmall(columns, rows)) {
    return (
      <TooSmallView
        columns={columns}
        rows={rows}
        minColumns={MIN_COLUMNS}
        minRows={MIN_ROWS}
        theme={theme}
        lines={tooSmallLines(state, cursorHeld, mode, now, ascii)}
        flash={flash}
      />
    );
  }

  const h = state.header;
  const banner =
    h.connection === 'connected'
      ? h.auditProblem
        ? `AUDIT LOG FAILING: ${h.auditProblem}`
        : h.quarantine !== undefined
          ? `QUARANTINED (${h.quarantine}): agent stopped, egress refused · nemoclaw-tui quarantine release`
          : undefined
      : h.connection === 'connecting'
        ? `connecting to the supervisor${host ? ` on ${host}` : ''}…`
        : `supervisor connection lost${h.connectionMessage ? `: ${h.connectionMessage}` : ''}; reconnecting (the sandbox keeps running)`;
  const bodyRows = rows - 2 - (banner ? 1 : 0);
  const uptime = h.startedAt === undefined ? '-' : duration(now - h.startedAt);
  const held = state.network.held.length;
  const sep = ascii ? ' | ' : ' │ ';
  const header = composeHeader(columns, sep, {
    brand: ' nemoclaw-tui',
    name: `${h.name}${host ? `@${host}` : ''}`,
    state: h.state,
    policy: `policy r${h.policyRevision}`,
    uptime: `up ${uptime}`,
    pending: `${held} pending`,
    events: `${compactNumber(h.eventCount)} events`,
    connection: h.connection,
  });

  const footerText =
    mode.kind === 'filter'
      ? ` /${mode.draft}_   type to filter ${PANE_TITLES[focus]}  ⏎ keep  Esc clear`
      : mode.kind === 'confirm'
        ? mode.confirm.kind === 'deny'
          ? ` type a reason (optional)  ⏎ ${mode.confirm.always ? 'always deny' : 'deny'}  Esc cancel`
          : mode.confirm.kind === 'quarantine'
            ? ' type a reason (optional)  ⏎ quarantine  Esc cancel'
          : ' y confirm  n / Esc cancel'
        : mode.kind === 'grant'
          ? mode.draft.step === 'confirm'
            ? ' y write exactly this  n / Esc cancel'
            : ' j/k move  ⏎ or 1-5 pick  Esc cancel (nothing is sent before y)'
        : mode.kind === 'rules'
          ? mode.confirm
            ? ' y remove  n / Esc keep'
            : ' x remove  j/k move  Esc back  ? help'
        : mode.kind === 'help'
          ? ' Esc / ? close help'
          : mode.kind === 'detail' || mode.kind === 'policy'
            ? ` j/k scroll  g/G top/bottom  Esc back${mode.kind === 'detail' && mode.held ? '  a/s/A/d/D decide' : ''}`
            : ' ' + PANE_HINTS[focus];

  let body;
  if (mode.kind === 'help') body = <HelpView width={columns} height={bodyRows} theme={theme} />;
  else if (mode.kind === 'confirm') body = <ConfirmView width={columns} height={bodyRows} theme={theme} {...confirmText(mode.confirm, state)} />;
  else if (mode.kind === 'grant') body = <ScopeChooser width={columns} height={bodyRows} theme={theme} draft={mode.draft} timeBoxes={timeBoxes} onPick={pickGrant} />;
  else if (mode.kind === 'rules' && mode.confirm) {
    const r = mode.confirm;
    body = (
      <ConfirmView
        width={columns}
        height={bodyRows}
        theme={theme}
        title={` Remove rule ${r.id}?`}
        lines={[
          ` ${ruleSummary(r, now)}`,
          ' This is a new policy revision (in the audit log).',
          r.action === 'allow' ? ' Requests it allowed are held for approval again;' : ' Requests it denied are held for approval again.',
          ...(r.action === 'allow' ? [' open connections it let through end.'] : []),
        ]}
        keys="[y] remove  [n] keep (Esc cancels)"
      />
    );
  } else if (mode.kind === 'rules')
    body = <RulesView width={columns} height={bodyRows} theme={theme} rules={mode.rules} error={mode.error} cursor={mode.cursor} now={now} />;
  else if (mode.kind === 'detail') body = <ScrollView width={columns} height={bodyRows} theme={theme} title={mode.title} lines={mode.lines} scroll={mode.scroll} />;
  else if (mode.kind === 'policy')
    body = (
      <ScrollView
        width={columns}
        height={bodyRows}
        theme={theme}
        title={mode.view ? `Policy revision r${String(mode.view.revision)} (Esc back)` : mode.error ? 'Policy (could not load)' : 'Policy (loading…)'}
        lines={mode.error ? [mode.error] : policyLines(mode.view)}
        scroll={mode.scroll}
      />
    );
  else {
    const layout = computeLayout(columns, bodyRows);
    const pane = (id: PaneId, width: number, height: number) => {
      const common = { width, height, focused: focus === id, theme };
      switch (id) {
        case 'network':
          return <NetworkPane key={id} {...common} items={lists.networkItems} heldCount={held} selected={sel('network')} now={now} filter={filters.network} />;
        case 'filesystem':
          return <FilesystemPane key={id} {...common} rows={lists.fsRows} selected={sel('filesystem')} filter={filters.filesystem} />;
        case 'meters':
          return <MetersPane key={id} {...common} meters={state.meters} ascii={ascii} />;
        case 'inference':
          return <InferencePane key={id} {...common} rows={lists.infRows} selected={sel('inference')} filter={filters.inference} ascii={ascii} />;
        case 'agent':
          return <AgentPane key={id} {...common} rows={lists.agentRows} selected={sel('agent')} filter={filters.agent} />;
      }
    };
    body = (
      <Box flexDirection={layout.kind === 'narrow' ? 'column' : 'row'} width={columns} height={bodyRows}>
        {layout.groups.map((g, i) => (
          <Box key={i} flexDirection={layout.kind === 'narrow' ? 'row' : 'column'}>
            {g.map((p) => pane(p.id, p.width, p.height))}
          </Box>
        ))}
      </Box>
    );
  }

  return (
    <Box flexDirection="column" width={columns} height={rows} overflow="hidden">
      <Box width={columns} height={1}>
        <Text bold color={theme.accent}>
          {header.left}
        </Text>
        <Text bold={held > 0} inverse={held > 0} color={held > 0 ? theme.held : theme.dim}>
          {header.pending}
        </Text>
        <Text>{' '.repeat(header.gap)}</Text>
        <Text color={h.connection === 'connected' ? theme.dim : theme.deny}>{header.right}</Text>
      </Box>
      {banner ? (
        <Text inverse color={h.connection === 'lost' || h.auditProblem || h.quarantine !== undefined ? theme.deny : theme.warn} wrap="truncate">
          {fit(' ' + banner, columns)}
        </Text>
      ) : null}
      {body}
      <Text inverse={Boolean(flash)} color={flash ? (flash.bad ? theme.deny : theme.allow) : theme.dim} wrap="truncate">
        {fit(flash && (mode.kind === 'normal' || mode.kind === 'rules') ? ` ${flash.text}  │${footerText}` : footerText, columns)}
      </Text>
    </Box>
  );
}

interface HeaderParts {
  brand: string;
  name: string;
  state: string;
  policy: string;
  uptime: string;
  pending: string;
  events: string;
  connection: string;
}

/** Fit the header into one row, dropping the least useful parts first (brand, events, uptime). */
function composeHeader(columns: number, sep: string, p: HeaderParts): { left: string; pending: string; gap: number; right: string } {
  const attempts: Array<{ left: string[]; right: string[] }> = [
    { left: [p.brand, p.name, p.state, p.policy, p.uptime], right: [p.events, p.connection] },
    { left: [' ' + p.name, p.state, p.policy, p.uptime], right: [p.events, p.connection] },
    { left: [' ' + p.name, p.state, p.policy, p.uptime], right: [p.connection] },
    { left: [' ' + p.name, p.state, p.policy], right: [p.connection] },
  ];
  for (const a of attempts) {
    const left = a.left.join(sep);
    const pending = sep + p.pending + ' ';
    const right = a.right.join(sep) + ' ';
    const gap = columns - left.length - pending.length - right.length;
    if (gap >= 1) return { left, pending, gap, right };
  }
  const left = fit(' ' + p.name + sep + p.state, Math.max(0, columns - p.pending.length - 4));
  return { left, pending: sep + p.pending, gap: 0, right: '' };
}

/** What the too-small screen says besides its size: the held count, the request the keys act on, the keys. */
function tooSmallLines(state: TuiState, cursorHeld: HeldRow | undefined, mode: Mode, now: number, ascii: boolean): string[] {
  const held = state.network.held.filter((r) => r.state === 'held').length;
  const listed = state.network.held.length;
  if (listed === 0) return ['nothing is held for a decision'];
  const mark = ascii ? '||' : '⏸';
  const out: string[] = [];
  if (cursorHeld) {
    const r = cursorHeld;
    const left = r.deadline === undefined ? '' : ` · ${duration(Math.max(0, r.deadline - now))} left`;
    out.push(`${mark} ${held} held · › ${r.host}:${r.port} ${r.binary !== '-' ? r.binary : ''} ${r.method !== '-' ? r.method : ''} ${r.path !== '-' ? r.path : ''}`.replace(/ +/g, ' ').trimEnd() + left);
  } else {
    out.push(`${mark} ${held} held · j/k to pick one`);
  }
  if (mode.kind === 'confirm') {
    const c = mode.confirm;
    if (c.kind === 'deny') out.push(`${c.always ? 'Always deny' : 'Deny'} ${c.row.host}:${c.row.port}? reason: ${c.reason}_  ⏎ deny  Esc cancel`);
    else out.push(`${confirmText(c, state).title.trim()}  y yes  n no`);
  } else {
    // A / D need the scope chooser, which needs the full screen.
    out.push('a approve  s session  d deny  j/k next  q detach  (A/D scope: larger terminal)');
  }
  return out;
}

function confirmText(c: Confirm, state: TuiState): { title: string; lines: string[]; keys?: string } {
  if (c.kind === 'deny') {
    const r = c.row;
    return {
      title: c.always ? ` Always deny ${r.host}:${r.port}?` : ` Deny ${r.host}:${r.port}?`,
      lines: [
        ` Request: ${r.method} ${r.path}${r.binary !== '-' ? ` from ${r.binary}` : ''}`,
        ...(c.always ? [' This writes a deny rule to the operator overlay: it survives restarts and is a new policy revision.'] : []),
        ' Reason (optional; written to the audit log and sent to the agent in the refusal):',
        ` > ${c.reason}_`,
      ],
      keys: `[⏎] ${c.always ? 'always deny' : 'deny'}  [Esc] cancel`,
    };
  }
  if (c.kind === 'always') {
    const r = c.row;
    return {
      title: ` Always allow ${r.host}:${r.port}?`,
      lines: [
        ` Scope: host ${r.host}, port ${r.port}${r.binary !== '-' ? `, binary ${r.binary}` : ', any binary'} — exactly this, no wildcard.`,
        ...(r.binary !== '-'
          ? [' The binary is as reported by /proc, not proven: any process of the sandbox uid can pass it a socket.']
          : []),
        ` Request: ${r.method} ${r.path}`,
        ' This writes an allow rule to the operator overlay: it survives restarts and is a new policy revision.',
      ],
    };
  }
  if (c.kind === 'quarantine') {
    return {
      title: ' Quarantine the sandbox?',
      lines: [
        // Each line fits 80 columns inside the border (ConfirmView cuts longer ones).
        ' Stops the agent; refuses ALL egress and inference.',
        ' The workdir is kept as evidence. It holds across restarts:',
        ' `up` is refused until `nemoclaw-tui quarantine release`.',
        ' Reason (optional; written to the audit log):',
        ` > ${c.reason}_`,
      ],
      keys: '[⏎] quarantine  [Esc] cancel',
    };
  }
  if (c.kind === 'detach') {
    return {
      title: ` Detach with ${c.held} held request${c.held === 1 ? '' : 's'}?`,
      lines: [
        ' The supervisor and the agent keep running; held requests stay held until someone decides',
        ' or they time out under the policy (approvals.timeout). Re-attach with `nemoclaw-tui`.',
      ],
    };
  }
  const w = state.meters.budget?.windows.find((x) => x.tokensCap !== undefined || x.costCap !== undefined);
  return {
    title: ' Raise the token budget?',
    lines: [
      w
        ? ` Current ${w.window} window: ${compactNumber(w.tokensUsed)} of ${compactNumber(w.tokensCap)} tokens used.`
        : ' No budget window with a cap is reported yet.',
      ' The caps of that window are raised by 50% (kept across restarts, recorded in the audit log).',
    ],
  };
}

function policyLines(view: PolicyView | undefined): string[] {
  if (!view) return [];
  const out = ['History (newest first):'];
  const hist = [...view.history].reverse();
  for (const r of hist.slice(0, 20)) {
    out.push(`  r${String(r.number).padEnd(4)} ${(r.time ?? '-').slice(0, 19).padEnd(19)} ${(r.author ?? '-').padEnd(9)} ${r.reason ?? ''}`);
  }
  if (hist.length > 20) out.push(`  … ${hist.length - 20} older revisions`);
  out.push('', 'Effective policy:');
  for (const l of view.yaml.split('\n')) out.push('  ' + l);
  return out;
}
