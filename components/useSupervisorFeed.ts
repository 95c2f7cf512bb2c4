import { useCallback, useEffect, useRef } from 'react';
import type { TuiClient } from './client.js';
import type { TuiStore } from './store.js';

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Keeps the store fed from the supervisor: follows events, refreshes status / pending / budget on
 * every (re)connect, and when the stream drops shows the loss and tries again with backoff. The
 * sandbox never depends on this: losing the TUI (or SSH) leaves the supervisor running.
 * Returns `refresh` for callers that changed something (a decision, a budget raise).
 */
export function useSupervisorFeed(client: TuiClient, store: TuiStore): () => void {
  const alive = useRef(true);
  const refresh = useCallback(() => {
    void client.status().then((s) => alive.current && store.setStatus(s), () => undefined);
    void client.pending().then((p) => alive.current && store.setPending(p), () => undefined);
    void client.budget().then((b) => alive.current && b && store.setBudget(b), () => undefined);
  }, [client, store]);

  useEffect(() => {
    alive.current = true;
    const ac = new AbortController();
    const { signal } = ac;
    void (async () => {
      let attempt = 0;
      while (!signal.aborted) {
        let reason = 'event stream ended';
        try {
          await client.follow(
            {
              onEvent: (e) => store.push(e),
              onOpen: () => {
                attempt = 0;
                store.setConnection('connected');
                refresh();
              },
              onLost: (r) => store.setConnection('lost', r),
            },
            signal,
          );
        } catch (err) {
          reason = message(err);
        }
        if (signal.aborted) break;
        attempt++;
        store.setConnection('lost', reason);
        await sleep(Math.min(5000, 200 * 2 ** Math.min(attempt, 5)), signal);
      }
    })();
    return () => {
      alive.current = false;
      ac.abort();
    };
  }, [client, store, refresh]);

  return refresh;
}
