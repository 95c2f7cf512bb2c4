#!/usr/bin/env node
// The drill: a scripted agent that walks through everything nemoclaw-tui guards, one step at a
// time, so every pane of the TUI has something to show without an API key or a model. It runs
// inside the sandbox on the bound Node (/opt/nemoclaw/node), reaches the network only through
// HTTP(S)_PROXY (NODE_USE_ENV_PROXY=1) and inference only through http://inference.local.
//
// Each step prints one human line and one JSON line ({"drill":…}) so tests and `logs -f` can follow it.
// Environment (all optional):
//   NEMOCLAW_INFERENCE_TOKEN  per-sandbox token for inference.local
//   DRILL_MODEL               model id to ask for (default drill-stub)
//   DRILL_LOCAL_DOWN_MODEL    model id the drill policy routes to a local provider that is down (default drill-local-down)
//   DRILL_ALLOWED_URL         a host the policy allows (default https://registry.npmjs.org/-/ping)
//   DRILL_UNKNOWN_URL         a host no rule mentions (default https://unknown.drill.nemoclaw.invalid/)
//   DRILL_LOOKUP_NAME         a name the drill resolves itself (default lookup.drill.nemoclaw.invalid)
//   DRILL_BURN_MAX            most calls while burning tokens (default 40)
//   DRILL_BURN_TOKENS         max_tokens per burn call (default 2000)
//   DRILL_REPEAT_SECONDS      run the walk again after this pause; 0 = once and exit (default 0)
//   DRILL_STEP_PAUSE_MS       pause between steps so a human can follow (default 0)
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { lookup } from 'node:dns/promises';

const env = process.env;
const token = env.NEMOCLAW_INFERENCE_TOKEN ?? '';
const model = env.DRILL_MODEL || 'drill-stub';
const localDownModel = env.DRILL_LOCAL_DOWN_MODEL || 'drill-local-down';
// Made up, in the shape of real keys (documentation example keys are left alone by the detector).
const SECRET_PROMPT = `Deploy with this key: ${'AKIA'}QYLPMN5HHHFPZAM2 and secret ${'8dyfuiRyq4'}/iJQtuCo+nGMB6CK0bZ81qpPuHmRkz`;
const PII_PROMPT = 'Please draft a reply to jane.doe@acme-widgets.io and call her at +1 415 555 0134 about invoice 4417.';
const allowedUrl = env.DRILL_ALLOWED_URL || 'https://registry.npmjs.org/-/ping';
const unknownUrl = env.DRILL_UNKNOWN_URL || 'https://unknown.drill.nemoclaw.invalid/';
const lookupName = env.DRILL_LOOKUP_NAME || 'lookup.drill.nemoclaw.invalid';
const burnMax = Number(env.DRILL_BURN_MAX || 40);
const burnTokens = Number(env.DRILL_BURN_TOKENS || 2000);
const repeatSeconds = Number(env.DRILL_REPEAT_SECONDS || 0);
const stepPauseMs = Number(env.DRILL_STEP_PAUSE_MS || 0);
const INFERENCE = 'http://inference.local/v1/chat/completions';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function report(round, step, outcome, detail) {
  const human = `drill[${round}] ${step}: ${outcome}${detail ? ` (${detail})` : ''}`;
  process.stdout.write(`${human}\n`);
  process.stdout.write(`${JSON.stringify({ drill: step, round, outcome, detail })}\n`);
}

async function httpGet(url, timeoutMs) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const body = await res.text();
    return { status: res.status, body: body.slice(0, 200) };
  } catch (err) {
    return { error: err.cause?.code || err.cause?.message || err.name || String(err) };
  }
}

async function chat(content, maxTokens, askModel = model) {
  try {
    const res = await fetch(INFERENCE, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ model: askModel, max_tokens: maxTokens, messages: [{ role: 'user', content }] }),
      signal: AbortSignal.timeout(120_000),
    });
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    // A policy refusal may come as an assistant reply (HTTP 200) that says so in this header.
    return { status: res.status, json, text: text.slice(0, 300), blocked: res.headers.get('x-nemoclaw-blocked') ?? undefined };
  } catch (err) {
    return { status: 0, error: err.cause?.code || err.cause?.message || String(err) };
  }
}

function tryFs(action) {
  try {
    action();
    return 'allowed';
  } catch (err) {
    return err.code || String(err);
  }
}

async function walk(round) {
  const steps = [
    async () => {
      const r = await httpGet(allowedUrl, 30_000);
      report(round, 'allowed-host', r.status ? `HTTP ${r.status}` : `failed: ${r.error}`, allowedUrl);
    },
    async () => {
      // Held for the operator when one is attached, refused (403) otherwise.
      const r = await httpGet(unknownUrl, 130_000);
      report(round, 'unknown-host', r.status ? `HTTP ${r.status}` : `failed: ${r.error}`, unknownUrl);
    },
    async () => {
      // A tool that resolves a name itself, as proxy-unaware clients do: under transparent
      // interception the supervisor's DNS responder answers and records it (net.dns); in a
      // loopback-only sandbox the lookup fails and nobody sees it (the network pane says which).
      const name = lookupName;
      try {
        const a = await lookup(name, { family: 4 });
        report(round, 'dns-lookup', `resolved to ${a.address}`, name);
      } catch (err) {
        report(round, 'dns-lookup', `failed: ${err.code ?? err.message}`, name);
      }
    },
    async () => {
      report(round, 'write-outside-sandbox', tryFs(() => writeFileSync('/etc/drill-was-here', 'x')), '/etc/drill-was-here');
      report(round, 'write-usr', tryFs(() => mkdirSync('/usr/lib/drill-was-here')), '/usr/lib/drill-was-here');
    },
    async () => {
      report(round, 'read-hidden', tryFs(() => readFileSync('/etc/shadow')), '/etc/shadow');
      report(round, 'read-hidden', tryFs(() => readFileSync('/root/.ssh/id_rsa')), '/root/.ssh/id_rsa');
    },
    async () => {
      // Personal data: the hybrid policy keeps it on the local model ("drill stub reply").
      const r = await chat(PII_PROMPT, 64);
      report(round, 'send-pii', r.status ? `HTTP ${r.status}` : `failed: ${r.error}`, r.json?.choices?.[0]?.message?.content?.slice(0, 80));
    },
    async () => {
      // Nothing sensitive: the cloud model answers ("drill cloud stub reply").
      const r = await chat('Summarise in one sentence what a deny-by-default sandbox is.', 64);
      report(round, 'send-plain', r.status ? `HTTP ${r.status}` : `failed: ${r.error}`, r.json?.choices?.[0]?.message?.content?.slice(0, 80));
    },
    async () => {
      // Personal data while the local model is down: the cloud gets it redacted, the answer comes back restored.
      const r = await chat(PII_PROMPT, 64, localDownModel);
      report(round, 'send-pii-local-down', r.status ? `HTTP ${r.status}` : `failed: ${r.error}`, r.json?.choices?.[0]?.message?.content?.slice(0, 120));
    },
    async () => {
      const r = await chat(SECRET_PROMPT, 64);
      const outcome = r.status ? `HTTP ${r.status}${r.blocked ? `, blocked (${r.blocked})` : ''}` : `failed: ${r.error}`;
      report(round, 'send-secret', outcome, (r.json?.error?.message ?? r.json?.choices?.[0]?.message?.content)?.slice(0, 120));
    },
    async () => {
      let calls = 0;
      let last = 0;
      while (calls < burnMax) {
        calls++;
        const r = await chat(`Burn round ${calls}: write a very long story about sandboxes.`, burnTokens);
        last = r.status;
        if (r.status !== 200) break;
      }
      const outcome = last === 402 ? 'stopped by the budget (HTTP 402)' : `HTTP ${last} after ${calls} calls`;
      report(round, 'burn-tokens', outcome, `${calls} calls`);
    },
  ];
  for (const step of steps) {
    await step();
    if (stepPauseMs > 0) await sleep(stepPauseMs);
  }
}

let round = 1;
for (;;) {
  await walk(round);
  report(round, 'done', 'walk complete', repeatSeconds > 0 ? `next walk in ${repeatSeconds}s` : undefined);
  if (!(repeatSeconds > 0)) break;
  await sleep(repeatSeconds * 1000);
  round++;
}
