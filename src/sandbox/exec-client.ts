/**
 * Client side of the exec stream (`nemoclaw-tui run`): connects to the supervisor's exec socket,
 * forwards stdin, writes the command's stdout/stderr through, and resolves with its exit code.
 */
import { connect } from 'node:net';
import { NemoclawError } from '../shared/errors.js';
import { FrameDecoder, encodeFrame, type ExecStart } from './exec-protocol.js';

export interface ExecIo {
  stdin: NodeJS.ReadableStream | null;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

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
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
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

/** Forward a signal to the sandboxed command (used by `run` on SIGINT/SIGTERM). */
export function killFrame(signal: NodeJS.Signals): Buffer {
  return encodeFrame('K', { signal });
}
