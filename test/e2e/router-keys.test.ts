/**
 * Provider keys never reach the sandbox. A real detached supervisor (`up`) holds one provider key in
 * its environment and another in the 0600 credentials file; `nemoclaw-tui run` starts a probe inside
 * the real sandbox that reports everything a sandboxed process can see (its environment, every
 * readable /proc/<pid>/environ and cmdline, every file under /sandbox) and calls
 * http://inference.local/v1/chat/completions through the egress proxy with the per-sandbox token.
 * The keys are searched for HERE, on the host, in that report: they are never handed to the sandbox,
 * not even to look for them. The stub upstreams must receive the real keys.
 *
 * Needs root and bubblewrap (CI installs them via .ci/run).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_PATH } from '../../src/policy/index.js';
import { runCli, startDaemonSupervisor, makeTempHome, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { startStubUpstream, type StubUpstream } from '../stubs/upstream.js';

const ENV_KEY = 'sk-e2e-env-key-0f1e2d3c4b5a69788796a5b4c3d2e1f0';
const FILE_KEY = 'sk-e2e-file-key-a1b2c3d4e5f60718293a4b5c6d7e8f90';

/**
 * Runs inside the sandbox; prints one JSON report on stdout. It finds the router the way an
 * unmodified OpenAI SDK would: OPENAI_BASE_URL and OPENAI_API_KEY (the per-sandbox token), which
 * the supervisor puts into every sandbox's environment.
 */
const PROBE = String.raw`
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
const token = process.env.OPENAI_API_KEY;
const base = process.env.OPENAI_BASE_URL;
const report = { env: process.env, environ: {}, cmdline: {}, files: {}, unreadable: [], calls: {}, credentials: null };
for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
  for (const what of ['environ', 'cmdline']) {
    try { report[what][pid] = readFileSync('/proc/' + pid + '/' + what, 'latin1').replaceAll('\0', '\n'); }
    catch (e) { report.unreadable.push('/proc/' + pid + '/' + what + ': ' + e.code); }
  }
}
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    let st; try { st = statSync(p); } catch { continue; }
    if (st.isDirectory()) walk(p);
    else if (st.isFile() && st.size < 4 * 1024 * 1024) {
      try { report.files[p] = readFileSync(p, 'latin1'); } catch (e) { report.unreadable.push(p + ': ' + e.code); }
    }
  }
};
walk('/sandbox');
try { report.credentials = readFileSync(process.argv[2], 'utf8'); } catch (e) { report.credentials = 'unreadable: ' + e.code; }
const call = async (name, model, auth) => {
  try {
    const res = await fetch(base + '/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(auth ? { authorization: 'Bearer ' + auth } : {}) },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello from ' + name }] }),
    });
    report.calls[name] = { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
  } catch (e) {
    report.calls[name] = { error: String(e && e.cause ? e.cause : e) };
  }
};
await call('env-key', 'via-env', token);
await call('file-key', 'via-file', token);
await call('no-token', 'via-env', undefined);
process.stdout.write(JSON.stringify(report));
`;

let home: TempHome;
let d: DaemonSupervisor | undefined;
let envStub: StubUpstream;
let fileStub: StubUpstream;

function policyText(): string {
  // The shipped baseline (filesystem, process, hidden paths), with an inference section that points
  // at the loopback stubs: one key from the supervisor's environment, one from the credentials file.
  const baseline = readFileSync(DEFAULT_POLICY_PATH, 'utf8');
  const head = baseline.slice(0, baseline.indexOf('\ninference:'));
  return `${head}
inference:
  providers:
    envcloud: { type: openai, base_url: "${envStub.openaiBaseUrl}", api_key_env: E2E_PROVIDER_KEY, models: [via-env] }
    filecloud: { type: openai, base_url: "${fileStub.openaiBaseUrl}", credential: filecloud, models: [via-file] }
  routes:
    - { name: no-secrets, when: { entities: [secret] }, block: true }
    - { name: file, when: { model: [via-file] }, provider: filecloud }
    - { name: default, provider: envcloud }
`;
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('router-keys e2e needs root (the sandbox drops to an unprivileged uid); run it as root, as CI does');
  if (!['/usr/bin/bwrap', '/bin/bwrap', '/usr/local/bin/bwrap'].some((p) => existsSync(p))) {
    throw new Error('router-keys e2e needs bubblewrap: apt-get install bubblewrap');
  }
  [envStub, fileStub] = await Promise.all([startStubUpstream({ requireKey: ENV_KEY }), startStubUpstream({ requireKey: FILE_KEY })]);
  home = await makeTempHome('nct-keys-');
  const credentials = join(home.dir, 'credentials.json');
  writeFileSync(credentials, JSON.stringify({ filecloud: FILE_KEY }), { mode: 0o600 });
  chmodSync(credentials, 0o600);
  d = await startDaemonSupervisor({ home: home.dir, policyText: policyText(), env: { E2E_PROVIDER_KEY: ENV_KEY } });
}, 90_000);

afterAll(async () => {
  await d?.stop();
  await home?.cleanup();
  await Promise.all([envStub?.close(), fileStub?.close()]);
});

describe('provider keys stay outside the sandbox', () => {
  it('are absent from everything a sandboxed process can see, while its calls reach the provider with the real key', async () => {
    const token = readFileSync(join(d!.paths.dir, 'inference-token'), 'utf8').trim();
    expect(token.length).toBeGreaterThanOrEqual(32);
    mkdirSync(d!.paths.workdir, { recursive: true });
    writeFileSync(join(d!.paths.workdir, 'probe.mjs'), PROBE);
    writeFileSync(join(d!.paths.workdir, 'notes.txt'), 'agent working files live here\n');

    const credentialsPath = join(home.dir, 'credentials.json');
    const r = await runCli(['run', '--', 'node', '/sandbox/probe.mjs', credentialsPath], { home: home.dir, timeoutMs: 90_000 });
    expect(r.code, `run failed:\n${r.stderr}`).toBe(0);
    const report = JSON.parse(r.stdout) as {
      env: Record<string, string>;
      environ: Record<string, string>;
      cmdline: Record<string, string>;
      files: Record<string, string>;
      credentials: string;
      calls: Record<string, { status?: number; body?: string; error?: string }>;
    };

    // The sandbox got the router's address and its own token (never a provider key) under SDK names.
    expect(report.env).toMatchObject({
      OPENAI_BASE_URL: 'http://inference.local/v1',
      OPENAI_API_KEY: token,
      ANTHROPIC_BASE_URL: 'http://inference.local',
      ANTHROPIC_API_KEY: token,
      NEMOCLAW_INFERENCE_TOKEN: token,
    });
    // The probe really looked: it ran behind the proxy, read process environments and the workdir.
    expect(report.env.HTTP_PROXY ?? report.env.http_proxy).toMatch(/^http:\/\/127\.0\.0\.1:/);
    expect(Object.keys(report.environ).length).toBeGreaterThan(0);
    expect(Object.values(report.environ).some((e) => e.includes('HTTP_PROXY='))).toBe(true);
    expect(Object.keys(report.files)).toEqual(expect.arrayContaining(['/sandbox/probe.mjs', '/sandbox/notes.txt']));
    // The credentials file of $NEMOCLAW_HOME is not reachable from inside.
    expect(report.credentials).toMatch(/^unreadable: /);

    // Calls through inference.local reach the providers, which saw the real keys.
    expect(report.calls['env-key'], JSON.stringify(report.calls['env-key'])).toMatchObject({ status: 200 });
    expect(JSON.parse(report.calls['env-key']!.body!).choices[0].message.content).toBe('echo: hello from env-key');
    expect(report.calls['file-key']).toMatchObject({ status: 200 });
    expect(report.calls['no-token']).toMatchObject({ status: 401 });
    expect(envStub.requests.map((q) => q.headers.authorization)).toEqual([`Bearer ${ENV_KEY}`]);
    expect(fileStub.requests.map((q) => q.headers.authorization)).toEqual([`Bearer ${FILE_KEY}`]);
    expect(envStub.receivedText() + JSON.stringify(envStub.requests.map((q) => q.headers))).not.toContain(token);

    // Nowhere in what the sandbox could see.
    const seen = JSON.stringify(report);
    for (const key of [ENV_KEY, FILE_KEY]) {
      expect(seen.includes(key), 'a provider key is visible inside the sandbox').toBe(false);
      expect(seen.includes(key.slice(8, 30)), 'part of a provider key is visible inside the sandbox').toBe(false);
    }

    // Nor in the events (`logs --output jsonl`) or the audit files on disk.
    const logs = await runCli(['logs', '--output', 'jsonl', '-n', '1000'], { home: home.dir });
    expect(logs.code, logs.stderr).toBe(0);
    const events = logs.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const done = events.filter((e) => e.kind === 'inference.done');
    expect(done.map((e) => [e.provider, e.status])).toEqual(expect.arrayContaining([['envcloud', 200], ['filecloud', 200]]));
    expect(events.some((e) => e.kind === 'inference.done' && e.status === 401)).toBe(true);
    for (const key of [ENV_KEY, FILE_KEY]) expect(logs.stdout.includes(key)).toBe(false);
    const auditDir = d!.paths.auditDir;
    for (const f of readdirSync(auditDir)) {
      const text = readFileSync(join(auditDir, f), 'latin1');
      for (const key of [ENV_KEY, FILE_KEY]) expect(text.includes(key), `key found in ${f}`).toBe(false);
    }
  }, 120_000);
});
