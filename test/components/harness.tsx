/**
 * Test harness: renders the real App into a fake terminal of a given size (ink-testing-library's
 * stdout has a fixed width and no rows), types keys into a fake stdin, and drives a fake control
 * client that records decisions.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { render, type Instance } from 'ink';
import { App } from '../../components/App.js';
import type { ApprovalDecision, DecisionScope, FollowHandlers, PolicyView, TuiClient } from '../../components/client.js';
import type { TuiEvent } from '../../components/selectors.js';
import { TuiStore } from '../../components/store.js';
import { TerminalSignals, type TerminalSignalsOptions } from '../../components/terminal-signals.js';

export const NOW = Date.parse('2026-11-22T10:00:00.000Z');

export class FakeTerminal extends EventEmitter {
  frames: string[] = [];
  isTTY = false;
  constructor(
    public columns: number,
    public rows: number,
  ) {
    super();
  }
  /** Writes that are not frames (bracketed paste on/off, which Ink sends around the app). */
  controls: string[] = [];
  write = (frame: string): boolean => {
    // eslint-disable-next-line no-control-regex
    if (/^(\u001B\[\?2004[hl])+$/.test(frame)) this.controls.push(frame);
    else this.frames.push(frame);
    return true;
  };
  lastFrame(): string {
    return this.frames.at(-1) ?? '';
  }
  resize(columns: number, rows: number): void {
    this.columns = columns;
    this.rows = rows;
    this.emit('resize');
  }
}

export class FakeStdin extends EventEmitter {
  isTTY = true;
  private data: string | null = null;
  write(data: string): void {
    this.data = data;
    this.emit('readable');
    this.emit('data', data);
  }
  read = (): string | null => {
    const d = this.data;
    this.data = null;
    return d;
  };
  setEncoding(): void {}
  setRawMode(): void {}
  resume(): void {}
  pause(): void {}
  ref(): void {}
  unref(): void {}
}

export class FakeClient implements TuiClient {
  decisions: Array<{ id: string; decision: ApprovalDecision; reason?: string; scope?: DecisionScope }> = [];
  pendingList: Record<string, unknown>[] = [];
  statusValue: Record<string, unknown> = { name: 'demo', state: 'running', policy: { revision: 3 }, started_at: '2026-11-22T08:59:00.000Z' };
  budgetRaises = 0;
  rulesList: Record<string, unknown>[] = [];
  removedRules: string[] = [];
  policyView: PolicyView = {
    revision: 4,
    yaml: 'version: 1\nnetwork_policies:\n  github:\n    binaries: [{ path: "/**" }]\n    endpoints:\n      - host: github.com\n        port: 443',
    history: [
      { number: 3, time: '2026-11-22T08:00:00.000Z', author: 'startup' },
      { number: 4, time: '2026-11-22T09:56:03.000Z', author: 'approval', reason: 'always allow api.example.test:8443' },
    ],
  };
  failDecide: Error | undefined;
  private handlers: FollowHandlers | undefined;
  followCalls = 0;

  async status() {
    return this.statusValue;
  }
  async pending() {
    return this.pendingList;
  }
  async decide(id: string, decision: ApprovalDecision, reason?: string, scope?: DecisionScope) {
    if (this.failDecide) throw this.failDecide;
    const d: { id: string; decision: ApprovalDecision; reason?: string; scope?: DecisionScope } = { id, decision };
    if (reason !== undefined) d.reason = reason;
    if (scope !== undefined && Object.keys(scope).length > 0) d.scope = scope;
    this.decisions.push(d);
    this.pendingList = this.pendingList.filter((p) => p.id !== id);
  }
  follow(handlers: FollowHandlers, signal: AbortSignal): Promise<void> {
    this.followCalls++;
    this.handlers = handlers;
    handlers.onOpen?.();
    return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  }
  async policy() {
    return this.policyView;
  }
  async budget() {
    return undefined;
  }
  async rules() {
    return this.rulesList;
  }
  quarantines: Array<string | undefined> = [];
  async quarantine(reason: string | undefined) {
    this.quarantines.push(reason);
    return 'quarantined';
  }
  async removeRule(id: string) {
    this.removedRules.push(id);
    this.rulesList = this.rulesList.filter((r) => r.id !== id);
    return `removed ${id}`;
  }
  async raiseBudget() {
    this.budgetRaises++;
    return 'day budget raised to 150k tokens';
  }
  /** Deliver an event, keeping the pending list the way a supervisor would. */
  emit(ev: TuiEvent): void {
    const pid = ev.pending_id;
    if (ev.kind === 'net.held' && typeof pid === 'string' && !this.pendingList.some((p) => p.id === pid)) {
      this.pendingList.push({ ...ev, id: pid, held_at: ev.ts });
    }
    this.handlers?.onEvent(ev);
  }
}

export function fixture(name: string): TuiEvent[] {
  const path = fileURLToPath(new URL(`./fixtures/${name}.jsonl`, import.meta.url));
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as TuiEvent);
}

export const KEYS = {
  tab: '\t',
  shiftTab: '\u001B[Z',
  enter: '\r',
  escape: '\u001B',
  ctrlC: '\u0003',
  down: '\u001B[B',
  up: '\u001B[A',
  backspace: '\u007F',
};

export const settle = (ms = 60) => new Promise((r) => setTimeout(r, ms));

export interface Harness {
  term: FakeTerminal;
  stdin: FakeStdin;
  client: FakeClient;
  store: TuiStore;
  instance: Instance;
  /** What the TUI wrote to the terminal outside its frames: bell, title, notifications. */
  signals: string[];
  detached: () => number;
  frame(): string;
  press(...keys: string[]): Promise<void>;
  feed(events: TuiEvent[]): Promise<void>;
  cleanup(): void;
}

export async function renderApp(opts: {
  columns: number;
  rows: number;
  ascii?: boolean;
  theme?: 'dark' | 'light';
  client?: FakeClient;
  signals?: Partial<Omit<TerminalSignalsOptions, 'write'>>;
}): Promise<Harness> {
  const term = new FakeTerminal(opts.columns, opts.rows);
  const signalWrites: string[] = [];
  const signals = new TerminalSignals({ write: (d) => signalWrites.push(d), ascii: opts.ascii ?? false, now: () => Date.now(), ...opts.signals });
  const stdin = new FakeStdin();
  const client = opts.client ?? new FakeClient();
  const store = new TuiStore({ name: 'demo', batchMs: 5 });
  let detachCount = 0;
  const instance = render(
    <App client={client} store={store} ascii={opts.ascii ?? false} theme={opts.theme ?? 'dark'} now={() => NOW} onDetach={() => detachCount++} signals={signals} />,
    {
      stdout: term as unknown as NodeJS.WriteStream,
      stdin: stdin as unknown as NodeJS.ReadStream,
      stderr: new FakeTerminal(opts.columns, opts.rows) as unknown as NodeJS.WriteStream,
      debug: true,
      exitOnCtrlC: false,
      patchConsole: false,
    },
  );
  await settle();
  return {
    term,
    stdin,
    client,
    store,
    instance,
    signals: signalWrites,
    detached: () => detachCount,
    frame: () => term.lastFrame(),
    async press(...keys: string[]) {
      for (const k of keys) {
        stdin.write(k);
        await settle(k === KEYS.escape ? 60 : 25);
      }
      await settle();
    },
    async feed(events: TuiEvent[]) {
      for (const e of events) client.emit(e);
      store.flush();
      await settle();
    },
    cleanup() {
      instance.unmount();
      instance.cleanup();
      store.dispose();
    },
  };
}

/** The frame as plain rows (colours stripped), for size assertions. */
export function rowsOf(frame: string): string[] {
  // eslint-disable-next-line no-control-regex
  return frame.replace(/\u001B\[[0-9;]*m/g, '').split('\n');
}
