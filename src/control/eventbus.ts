/**
 * The supervisor's event bus: every event goes to the audit log first (chained, group-committed
 * fsync), then — once durable — to live subscribers. A ring of recent durable events answers most
 * backlog requests without touching the disk. `durable()` is the write-ahead gate the proxy and the
 * router await before an allow takes effect.
 */
import { randomUUID } from 'node:crypto';
import { OCSF_CLASS, type AuditEvent, type EventInput, type EventKind } from '../audit/events.js';
import type { AuditHealth, AuditWatcher } from '../audit/log.js';
import type { Clock } from '../shared/clock.js';
import { systemClock } from '../shared/clock.js';
import type { EventBus, EventFilter } from './types.js';

/** What the bus needs from the audit log (src/audit AuditLog satisfies it). */
export interface AuditSink {
  append(input: EventInput): AuditEvent;
  readonly lastSeq: number;
  /** Audited events from disk, oldest first; with `limit`, the newest `limit` matches. */
  read(filter?: { sinceSeq?: number; sinceTs?: number; kinds?: EventKind[]; first?: boolean }, limit?: number): Promise<AuditEvent[]>;
  /**
   * Write-ahead sinks (AuditLog): records reach subscribers only through `watch().onDurable`, and
   * `durable()` resolves once everything appended so far is fsynced. A sink without them is
   * treated as durable on append (test fakes).
   */
  readonly durableSeq?: number;
  durable?(): Promise<void>;
  writable?(): Promise<void>;
  problem?(): string | undefined;
  health?(): AuditHealth;
  watch?(watcher: AuditWatcher): () => void;
}

export interface EventBusOptions {
  sandbox: string;
  audit: AuditSink;
  clock?: Clock;
  /** How many recent audited events are kept in memory for fast backlog. */
  ringSize?: number;
  /** Fields added to every event (e.g. `unsafe: true` when loopback upstreams are allowed). */
  extraFields?: Record<string, unknown>;
  /** Called when a subscriber throws; the bus keeps going. */
  onListenerError?: (err: unknown) => void;
}

interface Subscription {
  listener: (event: AuditEvent) => void;
  filter: EventFilter | undefined;
}

export function eventMatches(event: AuditEvent, filter: EventFilter | undefined): boolean {
  if (!filter) return true;
  if (filter.kinds && filter.kinds.length > 0 && !filter.kinds.includes(event.kind)) return false;
  if (filter.sinceSeq !== undefined && event.seq <= filter.sinceSeq && event.transient !== true) return false;
  if (filter.sinceTs !== undefined && Date.parse(event.ts) < filter.sinceTs) return false;
  return true;
}

export class SupervisorEventBus implements EventBus {
  private readonly sandbox: string;
  private readonly audit: AuditSink;
  private readonly clock: Clock;
  private readonly ringSize: number;
  private readonly extraFields: Record<string, unknown>;
  private readonly onListenerError: (err: unknown) => void;
  /** Circular buffer of the most recent audited events, oldest at `ringStart`. */
  private readonly ring: AuditEvent[] = [];
  private ringStart = 0;
  private readonly subscriptions = new Set<Subscription>();

  constructor(opts: EventBusOptions) {
    this.sandbox = opts.sandbox;
    this.audit = opts.audit;
    this.clock = opts.clock ?? systemClock;
    this.ringSize = Math.max(1, opts.ringSize ?? 10_000);
    this.extraFields = opts.extraFields ?? {};
    this.onListenerError = opts.onListenerError ?? (() => {});
    this.writeAhead = typeof this.audit.watch === 'function';
    this.audit.watch?.({
      onDurable: (events) => {
        for (const e of events) {
          this.remember(e);
          this.publish(e);
        }
      },
      onHealth: (h) => this.healthChanged(h),
    });
  }

  private readonly writeAhead: boolean;

  emit(input: EventInput): AuditEvent {
    const event = this.audit.append({ ...input, ...this.extraFields });
    if (!this.writeAhead) {
      this.remember(event);
      this.publish(event);
    }
    return event;
  }

  /** Resolves once every event emitted so far is durable; rejects (AuditUnavailableError) when the log lost any. */
  durable(): Promise<void> {
    return this.audit.durable ? this.audit.durable() : Promise.resolve();
  }

  /** Resolves when the audit log takes writes (at once, or after it resumed). */
  writable(): Promise<void> {
    return this.audit.writable ? this.audit.writable() : Promise.resolve();
  }

  /** Why the audit log refuses writes (names the log and the disk), or undefined while it is healthy. */
  auditProblem(): string | undefined {
    return this.audit.problem?.();
  }

  /** The disk failing is news for every subscriber now: a transient, critical event (it cannot be audited). */
  private healthChanged(h: AuditHealth): void {
    if (h.ok) return; // the resume is the chained audit.gap marker itself
    this.publishTransient({
      kind: 'sandbox.lifecycle',
      level: 'error',
      action: 'audit.failed',
      critical: true,
      reason: h.code,
      message: this.audit.problem?.() ?? h.message,
      dir: h.dir,
      disk: h.disk,
      since: h.since,
      first_lost_seq: h.firstLostSeq,
    });
  }

  publishTransient(input: EventInput): AuditEvent {
    const { kind, level, id, ...fields } = input;
    const event: AuditEvent = {
      ts: new Date(this.clock.now()).toISOString(),
      seq: this.durableSeq(),
      kind,
      level: level ?? 'debug',
      sandbox: this.sandbox,
      id: id ?? randomUUID(),
      ocsf_class: OCSF_CLASS[kind],
      ...fields,
      ...this.extraFields,
      transient: true,
      prev_hash: '',
      hash: '',
    };
    this.publish(event);
    return event;
  }

  subscribe(listener: (event: AuditEvent) => void, filter?: EventFilter): () => void {
    const sub: Subscription = { listener, filter };
    this.subscriptions.add(sub);
    return () => {
      this.subscriptions.delete(sub);
    };
  }

  async backlog(filter?: EventFilter, limit?: number, opts?: { first?: boolean }): Promise<AuditEvent[]> {
    // Events emitted before the request are part of it once durable (lost ones never are).
    await this.durable().catch(() => undefined);
    if (opts?.first === true && limit !== undefined) return this.backlogHead(filter, limit);
    const recent = this.recent();
    const oldestInRing = recent[0]?.seq;
    const sinceSeq = filter?.sinceSeq ?? 0;
    // The ring answers when it holds every event after sinceSeq (or, for a tail request, enough of them).
    let fromRing = oldestInRing !== undefined && oldestInRing <= sinceSeq + 1;
    if (!fromRing && oldestInRing === undefined) fromRing = this.durableSeq() <= sinceSeq;
    if (!fromRing && limit !== undefined && filter?.sinceTs === undefined) {
      const matching = recent.filter((e) => eventMatches(e, filter));
      if (matching.length >= limit) return matching.slice(matching.length - limit);
    }
    let events: AuditEvent[];
    if (fromRing) {
      events = recent.filter((e) => eventMatches(e, filter));
    } else {
      const diskFilter: { sinceSeq?: number; sinceTs?: number; kinds?: EventKind[] } = {};
      if (filter?.sinceSeq !== undefined) diskFilter.sinceSeq = filter.sinceSeq;
      if (filter?.sinceTs !== undefined) diskFilter.sinceTs = filter.sinceTs;
      if (filter?.kinds && filter.kinds.length > 0) diskFilter.kinds = [...filter.kinds];
      events = (await this.audit.read(diskFilter, limit)).filter((e) => eventMatches(e, filter));
    }
    if (limit !== undefined && events.length > limit) events = events.slice(events.length - limit);
    return events;
  }

  /** The oldest `limit` events matching after filter.sinceSeq: from the ring when it reaches back that far. */
  private async backlogHead(filter: EventFilter | undefined, limit: number): Promise<AuditEvent[]> {
    if (limit <= 0) return [];
    const recent = this.recent();
    const sinceSeq = filter?.sinceSeq ?? 0;
    const oldestInRing = recent[0]?.seq;
    const fromRing = oldestInRing !== undefined ? oldestInRing <= sinceSeq + 1 : this.durableSeq() <= sinceSeq;
    if (fromRing) {
      const out: AuditEvent[] = [];
      for (const e of recent) {
        if (!eventMatches(e, filter)) continue;
        out.push(e);
        if (out.length >= limit) break;
      }
      return out;
    }
    const diskFilter: { sinceSeq?: number; sinceTs?: number; kinds?: EventKind[]; first?: boolean } = { first: true };
    if (filter?.sinceSeq !== undefined) diskFilter.sinceSeq = filter.sinceSeq;
    if (filter?.sinceTs !== undefined) diskFilter.sinceTs = filter.sinceTs;
    if (filter?.kinds && filter.kinds.length > 0) diskFilter.kinds = [...filter.kinds];
    return (await this.audit.read(diskFilter, limit)).filter((e) => eventMatches(e, filter)).slice(0, limit);
  }

  /** The last seq assigned (its record may not be durable yet). */
  lastSeq(): number {
    return this.audit.lastSeq;
  }

  /** The last durable seq: what subscribers have been (or are being) given. */
  durableSeq(): number {
    return this.audit.durableSeq ?? this.audit.lastSeq;
  }

  subscriberCount(): number {
    return this.subscriptions.size;
  }

  private remember(event: AuditEvent): void {
    if (this.ring.length < this.ringSize) {
      this.ring.push(event);
    } else {
      this.ring[this.ringStart] = event;
      this.ringStart = (this.ringStart + 1) % this.ringSize;
    }
  }

  /** Ring contents, oldest first. */
  private recent(): AuditEvent[] {
    if (this.ringStart === 0) return this.ring.slice();
    return [...this.ring.slice(this.ringStart), ...this.ring.slice(0, this.ringStart)];
  }

  private publish(event: AuditEvent): void {
    for (const sub of [...this.subscriptions]) {
      if (!eventMatches(event, sub.filter)) continue;
      try {
        sub.listener(event);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }
}
