import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { inferenceServiceFactory } from '../../src/inference/index.js';
import { MINIMAL_POLICY, makeTempHome, startTestSupervisor, type TestSupervisor } from '../helpers/supervisor.js';
import { startStubUpstream, type StubUpstream } from '../stubs/upstream.js';

const KEY = 'sk-file-key-only-in-credentials-json';

let sup: TestSupervisor | undefined;
let stub: StubUpstream | undefined;

afterEach(async () => {
  await sup?.stop();
  await stub?.close();
  sup = undefined;
  stub = undefined;
});

function policyWith(inference: string): string {
  return `${MINIMAL_POLICY}inference:\n${inference}`;
}

function overSocket(socketPath: string, path: string, body: unknown, token: string): Promise<{ status: number; headers: Record<string, unknown>; json: any }> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = request({ socketPath, path, method: 'POST', headers: { host: 'inference.local', 'content-type': 'application/json', authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, json: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

describe('inference service in the supervisor', () => {
  it('serves inference.local on its Unix socket with the key from the 0600 credentials file, and exposes the budget on the control API', async () => {
    stub = await startStubUpstream({ requireKey: KEY });
    const home = await makeTempHome();
    writeFileSync(join(home.dir, 'credentials.json'), JSON.stringify({ cloud: { api_key: KEY } }), { mode: 0o600 });
    sup = await startTestSupervisor({
      home: home.dir,
      services: [inferenceServiceFactory],
      policyText: policyWith(`  providers:\n    cloud:\n      type: openai\n      base_url: ${stub.openaiBaseUrl}\n      credential: cloud\n  budgets:\n    hour: { tokens: 100000 }\n`),
    });
    const socket = join(sup.paths.runDir, 'inference.sock');
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const tokenFile = join(sup.paths.dir, 'inference-token');
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const token = readFileSync(tokenFile, 'utf8').trim();

    const res = await overSocket(socket, '/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'hello' }] }, token);
    expect(res.status).toBe(200);
    expect(res.json.choices[0].message.content).toBe('echo: hello');
    expect(stub.requests[0]!.headers.authorization).toBe(`Bearer ${KEY}`);

    const before = await sup.client.budget();
    expect(before.hour.caps.tokens).toBe(100000);
    expect(before.hour.used.tokens).toBeGreaterThan(0);
    const raised = await sup.client.setBudget('hour', { tokens: 250000 });
    expect(raised.hour.caps.tokens).toBe(250000);
    await expect(sup.client.setBudget('week' as never, { tokens: 1 })).rejects.toThrow(/scope must be one of/);

    const events = await sup.client.events({ kinds: ['inference.route', 'inference.done', 'budget.update'] });
    expect(events.map((e) => e.kind)).toEqual(expect.arrayContaining(['inference.route', 'inference.done', 'budget.update']));
    const status = await sup.client.status();
    expect(status.services.inference).toMatchObject({ running: true, socket });
    const everything = JSON.stringify(await sup.client.events({})) + JSON.stringify(status);
    expect(everything).not.toContain(KEY);
    await home.cleanup();
  });

  it('keeps the previous inference configuration when a new policy revision has a bad inference section', async () => {
    stub = await startStubUpstream();
    sup = await startTestSupervisor({
      services: [inferenceServiceFactory],
      policyText: policyWith(`  providers:\n    cloud:\n      type: openai\n      base_url: ${stub.openaiBaseUrl}\n`),
    });
    const token = readFileSync(join(sup.paths.dir, 'inference-token'), 'utf8').trim();
    const refused = await sup.client
      .setPolicy(policyWith(`  providers:\n    cloud:\n      type: grpc\n      base_url: ${stub.openaiBaseUrl}\n`))
      .then(() => undefined, (err: Error) => err);
    const res = await overSocket(join(sup.paths.runDir, 'inference.sock'), '/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'still here' }] }, token);
    expect(res.status).toBe(200);
    const status = await sup.client.status();
    const inference = status.services.inference as { policy_error?: string };
    // Either the policy engine refused the file (once it calls validateInferencePolicy) or the router kept its config and says why.
    expect(refused?.message ?? inference.policy_error).toContain('inference.providers.cloud.type');
  });

  it('refuses to start on an invalid inference section, naming the field', async () => {
    await expect(
      startTestSupervisor({ services: [inferenceServiceFactory], policyText: policyWith(`  routes:\n    - provider: nowhere\n`) }),
    ).rejects.toThrow(/inference\.routes\[0\]\.provider/);
  });
});

