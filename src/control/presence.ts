import type { OperatorPresence } from './types.js';

/** Counts attached operators (event streams opened with `approver=1`: TUIs, `logs -f --approver`). */
export class OperatorPresenceTracker implements OperatorPresence {
  private count = 0;
  private readonly listeners = new Set<(count: number) => void>();

  attachedCount(): number {
    return this.count;
  }

  onChange(listener: (count: number) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Register one operator; the returned function detaches it (idempotent). */
  attach(): () => void {
    this.count++;
    this.notify();
    let detached = false;
    return () => {
      if (detached) return;
      detached = true;
      this.count--;
      this.notify();
    };
  }

  private notify(): void {
    for (const l of [...this.listeners]) {
      try {
        l(this.count);
      } catch {
        // A listener's failure must not change who is attached.
      }
    }
  }
}
