/**
 * A model provider on loopback that misbehaves on purpose, chosen per request by the `model` field:
 *   truncated-json  200 application/json cut in the middle of the object
 *   bad-sse         200 text/event-stream whose events are not JSON
 *   mid-stream      200 text/event-stream, two good chunks, then the connection is destroyed
 *   html-500        500 text/html (a proxy's error page)
 *   huge            200 application/json of `hugeBytes` (one enormous content string)
 *   anything else   a correct, small chat completion
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface BadUpstream {
  openaiBaseUrl: string;
  requests: string[];
  close(): Promise<void>;
}

function completion(model: string, content: string): string {
  return JSON.stringify({
    id: 'chatcmpl-bad',
    object: 'chat.completion',
    created: 1,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
  });
}

function chunk(model: string, content: string): string {
  return `data: ${JSON.stringify({ id: 'chatcmpl-bad', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
}

export async function startBadUpstream(opts: { hugeBytes?: number } = {}): Promise<BadUpstream> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      let model = '';
      try {
        model = String((JSON.parse(Buffer.concat(parts).toString('utf8')) as { model?: unknown }).model ?? '');
      } catch {
        model = '';
      }
      requests.push(model);
      switch (model) {
        case 'truncated-json': {
          const whole = completion(model, 'this answer is cut off');
          const cut = whole.slice(0, Math.floor(whole.length / 2));
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(cut) });
          res.end(cut);
          return;
        }
        case 'bad-sse':
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: {"id": "chatcmpl-bad", "choices": [{"delta": {"content": "hel\n\n');
          res.write('data: <<<not json at all>>>\n\n');
          res.end('data: [DONE]\n\n');
          return;
        case 'mid-stream':
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(chunk(model, 'first '));
          res.write(chunk(model, 'second '));
          setTimeout(() => res.socket?.destroy(), 50);
          return;
        case 'html-500': {
          const html = '<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1></body></html>';
          res.writeHead(500, { 'content-type': 'text/html', 'content-length': Buffer.byteLength(html) });
          res.end(html);
          return;
        }
        case 'huge': {
          const body = completion(model, 'x'.repeat(opts.hugeBytes ?? 64 * 1024 * 1024));
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
          res.end(body);
          return;
        }
        default: {
          const body = completion(model || 'good', 'fine');
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
          res.end(body);
        }
      }
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    openaiBaseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
