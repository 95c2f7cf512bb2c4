#!/usr/bin/env node
// `npm start` leaves a working `nemoclaw-tui` on PATH: every hint the tool prints (`nemoclaw-tui
// down`, `nemoclaw-tui approve ID`…) names it. If PATH already finds this checkout's entry point,
// nothing happens. Otherwise a symlink is made in the first directory on PATH that we may write
// and that is meant for it (~/.local/bin, /usr/local/bin, npm's global bin unless that is the
// distribution's /usr/bin), and one line says so (remove the
// link to undo). When none is writable, one line gives the invocation that works instead.
// Another `nemoclaw-tui` first on PATH is left alone (and named). NEMOCLAW_NO_LINK=1 skips it all.
// Plain JS for any Node >= 18 (npm start may run on an old system Node).
import { accessSync, constants, existsSync, realpathSync, symlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const target = resolve(dirname(fileURLToPath(import.meta.url)), 'nemoclaw-tui.js');
const say = (line) => process.stderr.write(`nemoclaw-tui: ${line}\n`);

function main(env) {
  if (env.NEMOCLAW_NO_LINK === '1') return;
  const pathDirs = (env.PATH ?? '').split(':').filter((d) => d.startsWith('/'));
  for (const dir of pathDirs) {
    const candidate = join(dir, 'nemoclaw-tui');
    if (!existsSync(candidate)) continue;
    let real;
    try {
      real = realpathSync(candidate);
    } catch {
      continue;
    }
    if (real === realpathSync(target)) return; // already found: nothing to say
    say(`${candidate} (another nemoclaw-tui) comes first on PATH; this checkout's is \`node ${target}\``);
    return;
  }
  const home = env.HOME ?? homedir();
  // Never the distribution's own /usr/bin or /bin (Debian's npm has prefix /usr): those belong to dpkg.
  const npmBin = env.npm_config_prefix ? join(env.npm_config_prefix, 'bin') : undefined;
  const meant = [join(home, '.local', 'bin'), '/usr/local/bin', ...(npmBin && npmBin !== '/usr/bin' && npmBin !== '/bin' ? [npmBin] : [])];
  for (const dir of meant) {
    if (!pathDirs.includes(dir)) continue;
    try {
      accessSync(dir, constants.W_OK);
    } catch {
      continue;
    }
    const link = join(dir, 'nemoclaw-tui');
    try {
      symlinkSync(target, link);
    } catch {
      continue;
    }
    say(`linked ${link} -> ${target}, so the commands it prints work (remove the link to undo)`);
    return;
  }
  say(`not on PATH: run it as \`node ${target}\`, or link it: ln -s ${target} ~/.local/bin/nemoclaw-tui`);
}

main(process.env);
