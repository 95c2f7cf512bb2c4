#!/usr/bin/env node
// Thin entry: make sure we run on the project's pinned Node 24 with the Node/V8 flags the command
// wants (the TUI runs with a small young generation), then hand over to dist/.
// Written in plain JS that any Node >= 18 can parse, because it may be started by an old system Node.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const root = join(dirname(self), '..');
const major = Number(process.versions.node.split('.')[0]);
const args = process.argv.slice(2);

/** Run `node [nodeArgs] bin/nemoclaw-tui.js …args` in our place: same stdio, signals forwarded, its exit is ours. */
function relaunch(node, nodeArgs, env) {
  const child = spawn(node, [...nodeArgs, self, ...args], { stdio: 'inherit', env });
  // Forward termination signals so systemd / kill reach the real process (SIGINT reaches it
  // through the terminal's process group already).
  for (const sig of ['SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2']) {
    process.on(sig, () => child.kill(sig));
  }
  process.on('SIGINT', () => {});
  child.on('error', (err) => {
    process.stderr.write(`nemoclaw-tui: could not start ${node}: ${err.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    }
    process.exit(code ?? 1);
  });
}

if (major < 24 && !process.env.NEMOCLAW_NO_REEXEC) {
  const arch = process.arch === 'arm64' ? 'arm64' : 'x64';
  const candidates = [
    join(root, 'node_modules', `node-linux-${arch}`, 'bin', 'node'),
    join(root, 'node_modules', '.bin', 'node'),
  ];
  const pinned = candidates.find((p) => existsSync(p));
  if (!pinned) {
    process.stderr.write(
      `nemoclaw-tui: needs Node 24 (found ${process.version}) and the pinned runtime is not installed.\n` +
        `  next step: run \`npm ci\` in ${root} (it installs node-linux-${arch}), or install Node 24 LTS.\n`,
    );
    process.exit(1);
  }
  // The Node 24 process adds the command's flags itself (one more re-exec, only for the TUI).
  relaunch(pinned, [], { ...process.env, NEMOCLAW_NO_REEXEC: '1' });
} else {
  const entry = join(root, 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(entry)) {
    process.stderr.write(`nemoclaw-tui: ${entry} is missing.\n  next step: run \`npm run build\` in ${root}.\n`);
    process.exit(1);
  }
  const { main, nodeFlagsFor } = await import(entry);
  // V8 heap flags only take effect at process start, so a command that wants some (the TUI:
  // a small heap) runs in a child started with them. execArgv tells whether we are it.
  const missing = nodeFlagsFor(args).filter((f) => !process.execArgv.includes(f));
  if (missing.length > 0) {
    relaunch(process.execPath, [...process.execArgv, ...missing], process.env);
  } else {
    const code = await main(args);
    process.exitCode = typeof code === 'number' ? code : 0;
  }
}
