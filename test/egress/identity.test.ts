import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import { realpathSync } from 'node:fs';
import { execa, type ResultPromise } from 'execa';
import { commonAncestors, createBinaryIdentifier, parseProcNetTcp, type IdentifyTarget, type SocketHolders } from '../../src/egress/identity.js';
import { clientSocketInodes, procNetIpv4 } from '../../src/shared/procfs.js';
import { listenInNetns } from '../../src/sandbox/netns-listener.js';

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
  it('finds the inode of the client side of a connection to the listener, in tcp and tcp6 rows, and skips TIME_WAIT remnants', () => {
    const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0C38 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D6D8 0100007F:0C38 01 00000000:00000000 00:00000000 00000000 65534        0 4242 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0C38 0100007F:D6D8 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:D6D9 0100007F:0C38 06 00000000:00000000 03:00000E8F 00000000     0        0 0 3 0000000000000000
   4: 0100007F:D6DA 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 65534        0 777 1 0000000000000000 20 4 30 10 -1
   5: 0200007F:D6D8 0100007F:0C38 01 00000000:00000000 00:00000000 00000000 65534        0 9999 1 0000000000000000 20 4 30 10 -1
   6: 0100007F:D6DC 0200007F:0C38 01 00000000:00000000 00:00000000 00000000 65534        0 8888 1 0000000000000000 20 4 30 10 -1`;
    const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:D6DB 0000000000000000FFFF00000100007F:0C38 01 00000000:00000000 00:00000000 00000000 65534        0 5151 1 0000000000000000 20 4 0 10 -1`;
    const clients = new Set([0xd6d8, 0xd6d9, 0xd6da, 0xd6db, 0xd6dc].map((p) => `127.0.0.1:${p}`));
    const server = { ip: '127.0.0.1', port: 3128 };
    // The same client port from 127.0.0.2 (row 5) is another connection, and row 6 goes to another
    // listener address: matching is on the whole 4-tuple, so neither lends its inode.
    expect(clientSocketInodes(tcp, clients, server)).toEqual(new Map([['127.0.0.1:55000', [4242]]]));
    expect(clientSocketInodes(tcp, new Set(['127.0.0.2:55000']), server)).toEqual(new Map([['127.0.0.2:55000', [9999]]]));
    expect(clientSocketInodes(tcp6, clients, server)).toEqual(new Map([['127.0.0.1:55003', [5151]]]));
    expect(procNetIpv4('0100007F')).toBe('127.0.0.1');
    expect(procNetIpv4('0000000000000000FFFF00000100007F')).toBe('127.0.0.1');
    expect(procNetIpv4('00000000000000000000000001000000')).toBeUndefined();
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

describe('binary identity through a listener in a network namespace (needs root, ip, curl)', () => {
  let server: Server;
  let holder: ResultPromise | undefined;
  const seen: Array<string | undefined> = [];
  /** The holders looked up again when the first request bytes arrived (as before forwarding). */
  const seenHolders: Array<SocketHolders | undefined> = [];

  beforeAll(async () => {
    for (const tool of ['ip', 'curl']) {
      const r = await execa('which', [tool], { reject: false });
      if (r.exitCode !== 0) throw new Error(`${tool} is missing: install it (CI installs iproute2 curl via .ci/run)`);
    }
    await execa('ip', ['netns', 'add', NS]);
    await execa('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    // A process that stays in the netns, as the sandbox's root process does.
    holder = execa('ip', ['netns', 'exec', NS, 'sleep', '600'], { reject: false });
    for (let i = 0; i < 100 && holder.pid === undefined; i++) await new Promise((res) => setTimeout(res, 10));
    const rootPid = holder.pid as number;
    // 127.0.0.1:3128 of the netns, listening in our process, as the supervisor does for a sandbox.
    const listener = await listenInNetns(rootPid, 3128);
    const target: IdentifyTarget = { rootPid, relayPort: 3128 };
    const accepted = new WeakSet<object>();
    const identifier = createBinaryIdentifier((s) => (accepted.has(s) ? target : undefined));
    server = createServer((s) => {
      accepted.add(s);
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
    server.listen(listener);
  });

  afterAll(async () => {
    server?.close();
    if (holder?.pid) process.kill(holder.pid, 'SIGKILL');
    await holder?.catch(() => undefined);
    await execa('ip', ['netns', 'del', NS], { reject: false });
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

  it('answers undefined (fail closed) for a connection that did not come through a sandbox listener', async () => {
    const identifier = createBinaryIdentifier(() => undefined);
    const other = createServer(async (s) => {
      s.end(String(await identifier.identify(s)));
    });
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', () => r()));
    const port = (other.address() as { port: number }).port;
    const r = await execa('curl', ['-s', '--http0.9', `http://127.0.0.1:${port}/`], { reject: false });
    expect(r.stdout).toBe('undefined');
    other.close();
  });

  it('a lookup for a port nobody connects from names no one (the chain is not guessed)', async () => {
    const identifier = createBinaryIdentifier(() => ({ rootPid: holder?.pid as number, relayPort: 3128 }));
    const fake = { remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1' } as unknown as Socket;
    expect(await identifier.holders(fake)).toBeUndefined();
  });

});
