import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:net';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { commonAncestors, createBinaryIdentifier, parseProcNetTcp, parseSsUnix, type SocketHolders } from '../../src/egress/identity.js';

const NS = `egid${process.pid}`;

describe('binary identity parsing', () => {
  it('parses /proc/net/tcp rows', () => {
    const text = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0C38 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A1B2 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1`;
    expect(parseProcNetTcp(text)).toEqual([
      { localAddress: '0100007F', localPort: 3128, remoteAddress: '00000000', remotePort: 0, state: 10, inode: 4242 },
      { localAddress: '0100007F', localPort: 0xa1b2, remoteAddress: '0100007F', remotePort: 3128, state: 1, inode: 4343 },
    ]);
  });
  it('parses ss -xpnH rows', () => {
    const text = `u_str ESTAB 0 0 /tmp/x/proxy.sock 5001 * 5000 users:(("node",pid=10,fd=22))
u_str ESTAB 0 0 * 5000 * 5001 users:(("socat",pid=77,fd=6))`;
    expect(parseSsUnix(text)).toEqual([
      { localInode: 5001, peerInode: 5000, pids: [10] },
      { localInode: 5000, peerInode: 5001, pids: [77] },
    ]);
  });
});

describe('common ancestors of several holders', () => {
  it('keeps only what every holder descends from, in the first lineage\'s order', () => {
    expect(commonAncestors([])).toEqual([]);
    expect(commonAncestors([['/usr/bin/sh', '/usr/bin/git']])).toEqual(['/usr/bin/sh', '/usr/bin/git']);
    expect(commonAncestors([['/usr/bin/python3', '/usr/bin/git'], ['/usr/bin/git']])).toEqual(['/usr/bin/git']);
    expect(commonAncestors([['/usr/bin/python3'], []])).toEqual([]);
  });
});

describe('binary identity through a socat relay in a network namespace (needs root, ip, socat, curl)', () => {
  let dir: string;
  let server: Server;
  let relay: ResultPromise | undefined;
  const seen: Array<string | undefined> = [];
  /** The holders looked up again when the first request bytes arrived (as before forwarding). */
  const seenHolders: Array<SocketHolders | undefined> = [];

  beforeAll(async () => {
    for (const tool of ['ip', 'socat', 'curl']) {
      const r = await execa('which', [tool], { reject: false });
      if (r.exitCode !== 0) throw new Error(`${tool} is missing: install it (CI installs iproute2 socat curl via .ci/run)`);
    }
    dir = mkdtempSync(join(tmpdir(), 'egid-'));
    await execa('ip', ['netns', 'add', NS]);
    await execa('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    const sock = join(dir, 'proxy.sock');
    relay = execa('ip', ['netns', 'exec', NS, 'socat', 'TCP-LISTEN:3128,bind=127.0.0.1,fork,reuseaddr', `UNIX-CONNECT:${sock}`], { reject: false });
    const rootPid = () => relay?.pid as number;
    // ip netns exec execs socat in place, so relay.pid is socat's pid inside the netns.
    const identifier = createBinaryIdentifier(() => [{ rootPid: rootPid(), relayPort: 3128 }]);
    server = createServer((s) => {
      const id = identifier.identify(s);
      s.once('data', () => {
        void (async () => {
          seenHolders.push(await identifier.holders(s));
          const exe = await id;
          seen.push(exe);
          s.end(`HTTP/1.1 200 OK\r\nContent-Length: ${(exe ?? 'unknown').length}\r\nConnection: close\r\n\r\n${exe ?? 'unknown'}`);
        })();
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(sock, () => r()));
    // wait for the relay to listen
    for (let i = 0; i < 100; i++) {
      const r = await execa('ip', ['netns', 'exec', NS, 'ss', '-tlnH', 'sport = :3128'], { reject: false });
      if (r.stdout.includes('3128')) break;
      await new Promise((res) => setTimeout(res, 20));
    }
  });

  afterAll(async () => {
    if (relay?.pid) process.kill(relay.pid, 'SIGTERM');
    await relay?.catch(() => undefined);
    server?.close();
    await execa('ip', ['netns', 'del', NS], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  });

  it('names the executable of the sandbox process that opened the connection', async () => {
    const curl = realpathSync('/usr/bin/curl');
    const r = await execa('ip', ['netns', 'exec', NS, 'curl', '-s', '-x', 'http://127.0.0.1:3128', 'http://example.test/']);
    expect(r.stdout).toBe(curl);
    // A second, different client binary in the same sandbox netns is told apart.
    const script = "const s=require('net').connect(3128,'127.0.0.1',()=>s.write('GET http://x/ HTTP/1.1\\r\\n\\r\\n'));s.pipe(process.stdout)";
    const node = await execa('ip', ['netns', 'exec', NS, process.execPath, '-e', script]);
    expect(node.stdout).toContain(realpathSync(process.execPath));
    expect(seen).toEqual([curl, realpathSync(process.execPath)]);
  });

  it('names the ancestors inside the sandbox, parent first, and stops at its edge (OpenShell opa.rs::deep_ancestor_chain_matches)', async () => {
    // bash -> sh -> curl, all inside the netns; `ip netns exec` execs bash in place, and the test
    // runner above it is outside the netns, so the walk stops there.
    const bash = realpathSync('/usr/bin/bash');
    const sh = realpathSync('/bin/sh');
    const r = await execa('ip', ['netns', 'exec', NS, 'bash', '-c', "sh -c 'curl -s -x http://127.0.0.1:3128 http://example.test/; :'; :"]);
    expect(r.stdout).toBe(realpathSync('/usr/bin/curl'));
    expect(seenHolders.at(-1)?.ancestors).toEqual([sh, bash]);
    // Straight from the runner (no shell inside): no ancestors at all.
    await execa('ip', ['netns', 'exec', NS, 'curl', '-s', '-x', 'http://127.0.0.1:3128', 'http://example.test/']);
    expect(seenHolders.at(-1)?.ancestors).toEqual([]);
  });

  it('argv is never identity: a program renamed to /usr/bin/git (exec -a) under a shell named git is still curl under bash (OpenShell sandbox-policy.rego: cmdline excluded)', async () => {
    const bash = realpathSync('/usr/bin/bash');
    const r = await execa('ip', ['netns', 'exec', NS, 'bash', '-c', "exec -a /usr/bin/git bash -c '(exec -a /usr/bin/git curl -s -x http://127.0.0.1:3128 http://example.test/); :'"]);
    expect(r.stdout).toBe(realpathSync('/usr/bin/curl'));
    const h = seenHolders.at(-1);
    expect(h?.binaries).toEqual([realpathSync('/usr/bin/curl')]);
    expect(h?.ancestors).toEqual([bash]);
    expect(JSON.stringify(h)).not.toContain('git');
  });

  it('a connection handed to another program: holders name both executables (ambiguous), so no binary', async () => {
    // python connects, then passes the socket to a `sleep` child before it sends its request.
    const py = [
      'import socket, subprocess, sys',
      "s = socket.create_connection(('127.0.0.1', 3128))",
      "c = subprocess.Popen(['sleep', '5'], pass_fds=(s.fileno(),))",
      "s.sendall(b'GET http://x/ HTTP/1.1\\r\\n\\r\\n')",
      'print(s.recv(4096).decode().split(chr(10))[-1])',
      'c.kill()',
    ].join('\n');
    const python = (await execa('python3', ['-c', 'import os,sys;print(os.path.realpath(sys.executable))'])).stdout.trim();
    const r = await execa('ip', ['netns', 'exec', NS, python, '-c', py]);
    const sleep = realpathSync((await execa('which', ['sleep'])).stdout.trim());
    const h = seenHolders.at(-1);
    expect(h?.pids.length).toBe(2);
    expect(h?.binaries).toEqual([python, sleep].sort());
    // sleep's parent is python, python's is outside the sandbox: no ancestor is common to both.
    expect(h?.ancestors).toEqual([]);
    // The connection-time lookup saw python alone; what matters is the re-check (compareHolders refuses).
    expect(r.stdout).toBe(seen.at(-1) ?? 'unknown');
  });

  it('answers undefined (fail closed) for a connection that did not come through a known relay', async () => {
    const identifier = createBinaryIdentifier(() => []);
    const other = createServer(async (s) => {
      s.end(String(await identifier.identify(s)));
    });
    const sock = join(dir, 'other.sock');
    await new Promise<void>((r) => other.listen(sock, () => r()));
    const r = await execa('socat', ['-', `UNIX-CONNECT:${sock}`], { input: 'x', reject: false });
    expect(r.stdout).toBe('undefined');
    other.close();
  });
});
