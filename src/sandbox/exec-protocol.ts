/**
 * The exec stream: a framed, bidirectional protocol on the supervisor's exec socket
 * (`<sandbox dir>/exec.sock`, 0600 in the 0700 sandbox dir, next to the control socket).
 * A frame is 1 type byte, a 4-byte big-endian length and the payload.
 *
 *   client → supervisor: S start {command, workdir?, cwd?, env?, readOnlyBinds?, join?}   I stdin bytes
 *                        E stdin EOF   K {signal} (the client's SIGINT/SIGTERM/SIGHUP, forwarded)
 *   supervisor → client: P started {id, pid, net_mode, joined?, note?}   O stdout bytes   R stderr bytes
 *                        X exit {code, signal, exitCode}   F failure {error, message, next_step}
 *
 * A K frame that arrives before the sandbox is up is delivered once it is. If the client disconnects
 * before the command exits, the command is killed (SIGKILL).
 */
export type FrameType = 'S' | 'I' | 'E' | 'K' | 'O' | 'R' | 'X' | 'F' | 'P';

export interface ExecStart {
  command: string[];
  /** Host directory bound at /sandbox (default: the sandbox's workdir). */
  workdir?: string;
  /** Working directory inside the sandbox (default /sandbox). */
  cwd?: string;
  /** Extra environment over the policy's `process.env` (never over the proxy variables). */
  env?: Record<string, string>;
  /** Extra host paths bound read-only (targets below /opt or /sandbox). */
  readOnlyBinds?: Array<{ source: string; target: string }>;
  /**
   * 'agent' (the default): share the running agent sandbox's network namespace, so the command
   * reaches the agent's gateway on 127.0.0.1; without a running agent it gets a fresh sandbox and the
   * P frame carries a note saying so. 'none': always a fresh sandbox (what `run` uses).
   */
  join?: 'agent' | 'none';
}

/** What the P frame carries. */
export interface ExecStarted {
  id: string;
  pid: number;
  net_mode: string;
  /** Id of the agent instance whose network this command shares. */
  joined?: string;
  note?: string;
}

export const MAX_FRAME = 16 * 1024 * 1024;

export function encodeFrame(type: FrameType, payload: Buffer | string | object = Buffer.alloc(0)): Buffer {
  const body = Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/** Incremental decoder: feed chunks, get whole frames. Throws on an oversized frame. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Array<{ type: FrameType; payload: Buffer }> {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Array<{ type: FrameType; payload: Buffer }> = [];
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1);
      if (len > MAX_FRAME) throw new Error(`exec frame of ${len} bytes exceeds ${MAX_FRAME}`);
      if (this.buf.length < 5 + len) break;
      out.push({ type: this.buf.toString('latin1', 0, 1) as FrameType, payload: this.buf.subarray(5, 5 + len) });
      this.buf = this.buf.subarray(5 + len);
    }
    return out;
  }
}

export function execSocketPath(sandboxDir: string): string {
  return `${sandboxDir}/exec.sock`;
}
