/**
 * `up --agent-env KEY=VALUE` / NEMOCLAW_AGENT_ENV: extra environment for the agent, which can never
 * loosen the guard (the proxy, the CA bundle, the inference token stay the supervisor's).
 */
import { describe, expect, it } from 'vitest';
import { agentEnvFromEnvironment, parseAgentEnv } from '../../src/cli/commands/daemon.js';
import { makeTempHome, runCli } from '../helpers/supervisor.js';

describe('agent environment from the operator', () => {
  it('takes KEY=VALUE pairs, values may hold "=" and be empty', () => {
    expect(parseAgentEnv(['DRILL_STEP_PAUSE_MS=0', 'OPTS=a=b', 'EMPTY='])).toEqual({ DRILL_STEP_PAUSE_MS: '0', OPTS: 'a=b', EMPTY: '' });
    expect(agentEnvFromEnvironment({ NEMOCLAW_AGENT_ENV: '  A=1   B=2 ' })).toEqual(['A=1', 'B=2']);
    expect(agentEnvFromEnvironment({})).toEqual([]);
  });

  it.each([
    ['HTTPS_PROXY=http://evil:1', /cannot set HTTPS_PROXY/],
    ['no_proxy=*', /cannot set no_proxy/],
    ['NEMOCLAW_INFERENCE_TOKEN=x', /cannot set NEMOCLAW_INFERENCE_TOKEN/],
    ['NODE_EXTRA_CA_CERTS=/tmp/ca.pem', /cannot set NODE_EXTRA_CA_CERTS/],
    ['=x', /expects KEY=VALUE/],
    ['NOEQUALS', /expects KEY=VALUE/],
    ['1BAD=x', /expects KEY=VALUE/],
  ])('refuses %s', (pair, message) => {
    expect(() => parseAgentEnv([pair])).toThrow(message);
  });

  it('`up --agent-env HTTPS_PROXY=…` exits 2 naming the variable, and starts nothing', async () => {
    const home = await makeTempHome();
    try {
      const r = await runCli(['up', '--agent-env', 'HTTPS_PROXY=http://127.0.0.1:1'], { home: home.dir });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain('--agent-env cannot set HTTPS_PROXY');
      expect(r.stderr).toContain('policy set');
      const st = await runCli(['status', '--json'], { home: home.dir });
      expect(JSON.parse(st.stdout)).toMatchObject({ running: false });
    } finally {
      await home.cleanup();
    }
  }, 60_000);
});
