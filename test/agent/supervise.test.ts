import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { EventInput } from '../../src/audit/events.js';
import { AgentSupervisor, backoffDelay, listeningPorts, procIsListening } from '../../src/agent/supervise.js';
import { hostLauncher } from './host-launcher.js';

const NODE = process.execPath;

function collect() {
  const events: EventInput[] = [];
  const waitFor = async (pred: (e: EventInput[]) => boolean, ms = 15_000) => {
    const end = Date.now() + ms;
    while (!pred(events)) {
      if (Date.now() > end) throw new Error(`timed out; events: ${JSON.stringify(events.map((e) => [e.kind, e.action ?? e.line]))}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { events, emit: (e: EventInput) => void events.push(e), waitFor };
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

const states = (events: EventInput[]) => events.filter((e) => e.kind === 'sandbox.lifecycle').map((e) => String(e.action).replace(/^agent\./, ''));

describe('agent supervision', () => {
  it('reads LISTEN sockets from /proc/PID/net/tcp', async () => {
    const text = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:4965 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1',
      '   1: 0100007F:0050 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 2 1',
    ].join('\n');
    expect([...listeningPorts(text)]).toEqual([18789]);
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as { port: number }).port;
    expect(procIsListening(process.pid, port)).toBe(true);
    await new Promise((r) => srv.close(r));
    expect(procIsListening(process.pid, port)).toBe(false);
  });

  it('doubles the restart delay per consecutive failure up to the cap', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, 1000, 60_000))).toEqual([
      1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000,
    ]);
  });

  it('reports healthy once the agent listens, logs its output, and restarts it with backoff when it dies', async () => {
    const port = await freePort();
    const script = `const s=require('net').createServer().listen(${port},'127.0.0.1',()=>console.log('gateway listening on ${port}'));` +
      `process.on('SIGTERM',()=>process.exit(0));setTimeout(()=>{console.error('crash!');process.exit(3)},400)`;
    const { events, emit, waitFor } = collect();
    const launcher = hostLauncher();
    const sup = new AgentSupervisor({
      spec: { argv: [NODE, '-e', script], env: { PATH: process.env.PATH ?? '' }, readOnlyBinds: [], cwd: '/' },
      launcher,
      health: { kind: 'listen', port, timeoutMs: 10_000 },
      restart: 'always',
      emit,
      initialBackoffMs: 30,
      probeIntervalMs: 20,
    });
    sup.start();
    await waitFor((ev) => states(ev).filter((s) => s === 'healthy').length >= 2);
    await sup.stop();
    const st = states(events);
    expect(st.slice(0, 5)).toEqual(['starting', 'healthy', 'exited', 'restarting', 'starting']);
    const exited = events.find((e) => e.action === 'agent.exited');
    expect(exited).toMatchObject({ code: 3, level: 'warn' });
    const restarting = events.filter((e) => e.action === 'agent.restarting');
    expect(restarting[0]).toMatchObject({ in_ms: 30 });
    expect(events.some((e) => e.kind === 'agent.log' && e.line === `gateway listening on ${port}` && e.stream === 'stdout')).toBe(true);
    expect(events.some((e) => e.kind === 'agent.log' && e.line === 'crash!' && e.stream === 'stderr')).toBe(true);
    expect(st.at(-1)).toBe('stopped');
    expect(launcher.launches).toBeGreaterThanOrEqual(2);
    expect(sup.status().state).toBe('stopped');
  });

  it('kills and restarts an agent that never starts listening, with growing delays', async () => {
    const port = await freePort();
    const { events, emit, waitFor } = collect();
    const sup = new AgentSupervisor({
      spec: { argv: [NODE, '-e', 'setInterval(()=>{},1000)'], env: {}, readOnlyBinds: [], cwd: '/' },
      launcher: hostLauncher(),
      health: { kind: 'listen', port, timeoutMs: 150 },
      restart: 'always',
      emit,
      initialBackoffMs: 20,
      probeIntervalMs: 20,
    });
    sup.start();
    await waitFor((ev) => ev.filter((e) => e.action === 'agent.restarting').length >= 3);
    await sup.stop();
    const unhealthy = events.filter((e) => e.action === 'agent.unhealthy');
    expect(unhealthy[0]?.reason).toBe(`not listening on port ${port} after 150 ms`);
    expect(events.filter((e) => e.action === 'agent.restarting').slice(0, 3).map((e) => e.in_ms)).toEqual([20, 40, 80]);
  });

  it('never kills an agent that is still making progress at the timeout (a state migration): it waits while output comes, then it is healthy (issue 15)', async () => {
    const port = await freePort();
    // Logs at once and every 50 ms for 2 s (well past the 800 ms timeout; node starts in well under that), then listens.
    const script = `console.log('migrating');let n=0;const t=setInterval(()=>{console.log('migrating '+(++n));if(n===40){clearInterval(t);require('net').createServer().listen(${port},'127.0.0.1');}},50);process.on('SIGTERM',()=>process.exit(0))`;
    const { events, emit, waitFor } = collect();
    const sup = new AgentSupervisor({
      spec: { argv: [NODE, '-e', script], env: {}, readOnlyBinds: [], cwd: '/' },
      launcher: hostLauncher(),
      health: { kind: 'listen', port, timeoutMs: 800, quietMs: 400, maxWaitMs: 10_000 },
      restart: 'always',
      emit,
      initialBackoffMs: 20,
      probeIntervalMs: 20,
    });
    sup.start();
    await waitFor((ev) => states(ev).includes('healthy') || states(ev).includes('unhealthy'));
    await sup.stop();
    expect(states(events).slice(0, 3)).toEqual(['starting', 'health_wait_extended', 'healthy']);
    expect(events.find((e) => e.action === 'agent.health_wait_extended')?.reason).toMatch(/still writing output/);
  });

  it('a silent agent past the timeout, or one past the longest wait, is stopped', async () => {
    const port = await freePort();
    const { events, emit, waitFor } = collect();
    const sup = new AgentSupervisor({
      // Writes forever, never listens: extended, then stopped at maxWaitMs.
      spec: { argv: [NODE, '-e', "console.log('busy');setInterval(()=>console.log('still busy'),30)"], env: {}, readOnlyBinds: [], cwd: '/' },
      launcher: hostLauncher(),
      health: { kind: 'listen', port, timeoutMs: 800, quietMs: 400, maxWaitMs: 1600 },
      restart: 'never',
      emit,
      probeIntervalMs: 20,
    });
    sup.start();
    await waitFor((ev) => states(ev).includes('unhealthy'));
    await sup.stop();
    const unhealthy = events.find((e) => e.action === 'agent.unhealthy');
    expect(unhealthy?.reason).toMatch(new RegExp(`not listening on port ${port} after \\d+ ms`));
    expect(states(events)).toContain('health_wait_extended');
  });

  it('does not restart a scripted agent that completed successfully (on-failure policy)', async () => {
    const { events, emit, waitFor } = collect();
    const sup = new AgentSupervisor({
      spec: { argv: [NODE, '-e', 'console.log("drill done")'], env: {}, readOnlyBinds: [], cwd: '/' },
      launcher: hostLauncher(),
      health: { kind: 'started' },
      restart: 'on-failure',
      emit,
    });
    sup.start();
    await waitFor((ev) => states(ev).includes('completed'));
    expect(states(events)).toEqual(['starting', 'healthy', 'exited', 'completed']);
    expect(sup.status().state).toBe('stopped');
    await sup.stop();
  });

  it('reports a launch failure and gives up under the never policy', async () => {
    const { events, emit, waitFor } = collect();
    const sup = new AgentSupervisor({
      spec: { argv: ['/nonexistent/agent-binary'], env: {}, readOnlyBinds: [], cwd: '/' },
      launcher: hostLauncher(),
      health: { kind: 'started' },
      restart: 'never',
      emit,
    });
    sup.start();
    await waitFor((ev) => states(ev).includes('failed'));
    expect(events.find((e) => e.action === 'agent.launch_failed')?.reason).toMatch(/ENOENT/);
    expect(sup.status().state).toBe('failed');
    await sup.stop();
  });

  it('a stop that arrives while the agent is still being launched stops the agent it gets (down never hangs)', async () => {
    const { events, emit, waitFor } = collect();
    const inner = hostLauncher();
    let releaseLaunch!: () => void;
    const launchGate = new Promise<void>((r) => (releaseLaunch = r));
    let launched: { pid: number } | undefined;
    // The sandbox launch takes a while (bwrap, bridge); stop() lands in the middle of it.
    const slowLauncher: typeof inner = {
      ...inner,
      async launch(spec, onLine) {
        const proc = await inner.launch(spec, onLine);
        launched = proc;
        await launchGate;
        return proc;
      },
    };
    const sup = new AgentSupervisor({
      spec: { argv: [NODE, '-e', 'setInterval(() => {}, 1000)'], env: {}, readOnlyBinds: [], cwd: '/' },
      launcher: slowLauncher,
      health: { kind: 'started' },
      restart: 'always',
      emit,
    });
    sup.start();
    await waitFor(() => launched !== undefined);
    const stopped = sup.stop();
    releaseLaunch();
    await stopped;
    expect(sup.status().state).toBe('stopped');
    expect(() => process.kill(launched!.pid, 0), 'the agent launched during stop() is still running').toThrow();
    expect(states(events)).not.toContain('restarting');
  });
});
