/** Test launcher: runs the agent command directly on the host (no sandbox), line-splitting output. */
import { spawn } from 'node:child_process';
import type { AgentLauncher, ExitStatus, LaunchedProcess } from '../../src/agent/supervise.js';

export function hostLauncher(log: { launches: number } = { launches: 0 }): AgentLauncher & { launches: number } {
  const launcher = {
    launches: 0,
    async launch(spec: Parameters<AgentLauncher['launch']>[0], onLine: Parameters<AgentLauncher['launch']>[1]): Promise<LaunchedProcess> {
      launcher.launches++;
      log.launches++;
      // Stand-in for the sandbox's read-only binds: rewrite /opt/nemoclaw/... to the host source.
      const mapPath = (a: string): string => {
        for (const b of spec.readOnlyBinds) {
          if (a === b.target || a.startsWith(`${b.target}/`)) return b.source + a.slice(b.target.length);
        }
        return a;
      };
      const [cmd, ...args] = spec.argv.map(mapPath);
      const child = spawn(cmd!, args, {
        env: spec.env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      for (const [name, stream] of [['stdout', child.stdout], ['stderr', child.stderr]] as const) {
        let buf = '';
        stream.setEncoding('utf8');
        stream.on('data', (d: string) => {
          buf += d;
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            onLine(name, buf.slice(0, i));
            buf = buf.slice(i + 1);
          }
        });
      }
      const exited = new Promise<ExitStatus>((resolve) =>
        child.on('exit', (code, signal) => resolve({ code, signal })),
      );
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', () => resolve());
        child.once('error', reject);
      });
      return {
        pid: child.pid!,
        exited,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          await exited;
        },
      };
    },
  };
  return launcher;
}
