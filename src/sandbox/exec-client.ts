/**
 * Client side of the exec stream (`nemoclaw-tui run`): connects to the supervisor's exec socket,
 * forwards stdin, writes the command's stdout/stderr through, and resolves with its exit code.
 */
import { connect } from 'node:net';
import { NemoclawError } from '../shared/errors.js';
import { FrameDecoder, encodeFrame, type ExecStart, type ExecStarted } from './exec-protocol.js';

/** Where the client's signals come from (process by default; an EventEmitter in tests). */
export interface SignalSource {
  on(signal: NodeJS.Signals, fn: (signal: NodeJS.Signals) => void): unknown;
  removeListener(signal: NodeJS.Signals, fn: (signal: NodeJS.Signals) => void): unknown;
}

export interface ExecIo {
  stdin: NodeJS.ReadableStream | null;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /**
   * SIGINT, SIGTERM and SIGHUP received here are forwarded to the command (so Ctrl-C lets it clean
   * up) instead of ending this process; the third SIGINT kills it. `false` forwards nothing.
   */
  signals?: SignalSource | false;
}

export const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
/** After this many SIGINTs the command is killed outright (it may be ignoring them). */
const SIGINTS_BEFORE_KILL = 3;

export interface ExecResult {
  code: number | null;
  signal: string | null;
  exitCode: number;
}

export function execInSandbox(socketPath: string, start: ExecStart, io: ExecIo): Promise<ExecResult> {
  return new Promise<ExecResult>((resolvePromise, reject) => {
    const socket = connect(socketPath);
    const decoder = new FrameDecoder();
    let settled = false;
    const signals = io.signals === false ? undefined : (io.signals ?? process);
    let sigints = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (socket.destroyed) return;
      if (signal === 'SIGINT' && ++sigints >= SIGINTS_BEFORE_KILL) {
        io.stderr.write(`nemoclaw-tui: ${sigints} interrupts: killing the command\n`);
        socket.write(encodeFrame('K', { signal: 'SIGKILL' }));
        return;
      }
      socket.write(encodeFrame('K', { signal }));
    };
    for (const sig of FORWARDED_SIGNALS) signals?.on(sig, onSignal);
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      for (const sig of FORWARDED_SIGNALS) signals?.removeListener(sig, onSignal);
      io.stdin?.removeListener('data', onStdin);
      io.stdin?.removeListener('end', onStdinEnd);
      io.stdin?.pause?.();
      fn();
    };
    const onStdin = (d: Buffer | string): void => {
      socket.write(encodeFrame('I', Buffer.isBuffer(d) ? d : Buffer.from(d)));
    };
    const onStdinEnd = (): void => {
      if (!socket.destroyed) socket.write(encodeFrame('E'));
    };
    socket.on('connect', () => {
      socket.write(encodeFrame('S', start));
    });
    socket.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) {
        if (f.type === 'P') {
          let started: Partial<ExecStarted> = {};
          try {
            started = JSON.parse(f.payload.toString('utf8')) as ExecStarted;
          } catch {
            /* an older supervisor sent no details */
          }
          if (started.note) io.stderr.write(`nemoclaw-tui: note: ${started.note}\n`);
          if (io.stdin) {
            io.stdin.on('data', onStdin);
            io.stdin.on('end', onStdinEnd);
            io.stdin.resume?.();
          } else socket.write(encodeFrame('E'));
        } else if (f.type === 'O') io.stdout.write(f.payload);
        else if (f.type === 'R') io.stderr.write(f.payload);
        else if (f.type === 'X') settle(() => resolvePromise(JSON.parse(f.payload.toString('utf8')) as ExecResult));
        else if (f.type === 'F') {
          const e = JSON.parse(f.payload.toString('utf8')) as { error?: string; message?: string; next_step?: string };
          settle(() =>
            reject(
              new NemoclawError((e.error as never) ?? 'internal', e.message ?? 'the sandbox could not run the command', {
                ...(e.next_step ? { nextStep: e.next_step } : {}),
                exitCode: e.error === 'invalid_input' ? 2 : 1,
              }),
            ),
          );
        }
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      settle(() =>
        reject(
          new NemoclawError('not_running', `cannot reach the sandbox service on ${socketPath}: ${err.code ?? err.message}`, {
            nextStep: 'start the supervisor with `nemoclaw-tui up` (run does this itself), and check `nemoclaw-tui status`',
          }),
        ),
      );
    });
    socket.on('close', () => {
      settle(() =>
        reject(new NemoclawError('io', 'the supervisor closed the exec stream before the command exited', {
          nextStep: 'look at the supervisor log (`nemoclaw-tui status` names it)',
        })),
      );
    });
  });
}

/** A frame that forwards a signal to the sandboxed command. */
export function killFrame(signal: NodeJS.Signals): Buffer {
  return encodeFrame('K', { signal });
}
