/**
 * Which endpoints get per-request (L7) checks, and the one request-target both the check and the
 * upstream see. The checks themselves (method + canonical path + query globs, on every request of
 * a keep-alive connection too) are the policy matcher's: the proxy asks
 * `decide({host, port, binary, method, path})` (src/policy/matcher.ts).
 */
import { canonicalizeRequestTarget } from '../policy/path.js';
import type { Endpoint } from '../policy/types.js';

/** Does this endpoint ask for per-request checks? */
export function endpointHasL7(ep: Endpoint | undefined): boolean {
  if (!ep) return false;
  return (
    ep.protocol === 'rest' ||
    ep.protocol === 'websocket' ||
    ep.rules.length > 0 ||
    ep.deny_rules.length > 0 ||
    ep.access !== undefined ||
    ep.path !== undefined
  );
}

export type L7Target = { ok: true; path: string; pathAndQuery: string } | { ok: false; reason: string };

/**
 * The canonical request-target (OpenShell l7/path.rs): `//` collapsed, unreserved bytes decoded,
 * `;params` stripped, dot segments resolved; `%00`, `..` above the root and `%2F` (unless the
 * endpoint has `allow_encoded_slash`) refused. The proxy matches and forwards exactly this, so the
 * upstream cannot dispatch on a path the policy did not decide on. The query is kept byte for byte.
 */
export function canonicalL7Target(ep: Endpoint | undefined, pathAndQuery: string): L7Target {
  const c = canonicalizeRequestTarget(pathAndQuery, { allowEncodedSlash: ep?.allow_encoded_slash === true });
  if (!c.ok) return { ok: false, reason: c.message };
  return { ok: true, path: c.path, pathAndQuery: c.query === undefined ? c.path : `${c.path}?${c.query}` };
}

/**
 * Does a CONNECT tunnel to this endpoint have to be decrypted? Only when per-request checks
 * could refuse something. Not for `protocol: tcp`, not for `tls: skip` (the caller refuses those
 * that have L7 rules, see `tlsSkipConflict`), and not for an endpoint without protocol whose only
 * L7 field is `access: full` (or none at all): OpenShell reads an endpoint without `protocol` as
 * L4-only (l7/mod.rs `parse_l7_config` returns None), so there is nothing to check and the TLS is
 * the client's and the server's business (the client sees the server's real certificate).
 */
export function tunnelNeedsInspection(ep: Endpoint | undefined): boolean {
  if (!ep || ep.protocol === 'tcp' || ep.tls === 'skip') return false;
  if (ep.protocol === 'rest' || ep.protocol === 'websocket') return true;
  const onlyFull = ep.rules.length === 0 && ep.deny_rules.length === 0 && (ep.path === undefined || ep.path === '') && (ep.access === undefined || ep.access === 'full');
  return !onlyFull;
}

/**
 * `tls: skip` on an endpoint whose L7 rules would then be unenforceable in a CONNECT tunnel.
 * OpenShell relays such a tunnel raw and only warns (l7/mod.rs `validate_tls_skip_with_l7_on_443_warns`,
 * proxy.rs `effective_tls_skip` → `relay_tcp`), which skips the rules; here the CONNECT is refused
 * instead (never wider). Plain-HTTP requests to it (absolute-form) are still checked per request.
 */
export function tlsSkipConflict(ep: Endpoint | undefined): boolean {
  if (!ep || ep.tls !== 'skip' || ep.protocol === 'tcp') return false;
  const e = { ...ep, tls: undefined };
  return tunnelNeedsInspection(e);
}

/** The one `Upgrade` this proxy relays: RFC 6455 WebSocket over HTTP/1.1 GET. */
export type UpgradeKind = 'none' | 'websocket' | 'other';

/**
 * What a request asks to switch to. `websocket` needs GET, HTTP/1.1, exactly `Upgrade: websocket`
 * (case-insensitive), `Connection` naming `upgrade`, one `Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`
 * and no body (OpenShell
 * l7/rest.rs `request_is_websocket_upgrade`). Anything else with an `Upgrade` header (h2c, TLS/1.0,
 * a websocket upgrade that is malformed) is `other`: its Upgrade/Connection headers are stripped and
 * it is forwarded as a plain request, so no other protocol can be switched to through the proxy.
 */
export function upgradeKind(head: {
  method: string;
  version: string;
  byName: Map<string, string[]>;
  contentLength: number;
  chunked: boolean;
}): UpgradeKind {
  const upgrade = head.byName.get('upgrade');
  if (!upgrade || upgrade.length === 0) return 'none';
  const connection = (head.byName.get('connection') ?? []).join(',').toLowerCase().split(',').map((s) => s.trim());
  const tokens = upgrade.join(',').split(',').map((s) => s.trim().toLowerCase()).filter((s) => s.length > 0);
  const key = head.byName.get('sec-websocket-key');
  const version = head.byName.get('sec-websocket-version');
  if (
    version === undefined ||
    version.length !== 1 ||
    (version[0] as string).trim() !== '13'
  ) {
    return 'other';
  }
  if (
    head.method === 'GET' &&
    head.version === '1.1' &&
    tokens.length === 1 &&
    tokens[0] === 'websocket' &&
    connection.includes('upgrade') &&
    key !== undefined &&
    key.length === 1 &&
    /^[A-Za-z0-9+/]{22}==$/.test((key[0] as string).trim()) &&
    head.contentLength === 0 &&
    !head.chunked
  ) {
    return 'websocket';
  }
  return 'other';
}

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** The `Sec-WebSocket-Accept` a server must answer for `key` (RFC 6455 §4.2.2). */
export function websocketAccept(key: string, sha1Base64: (s: string) => string): string {
  return sha1Base64(key.trim() + WS_GUID);
}

/**
 * Client-to-server WebSocket frames on an upgraded connection whose rules do not allow client text
 * messages (`protocol: websocket` without a `WEBSOCKET_TEXT` allow for the upgrade path, or with a
 * matching deny): bytes pass through unchanged, frame by frame, until a frame opens a text message
 * (opcode 1); that one is not forwarded and `onDenied` is called (the caller closes with 1008, as
 * OpenShell's parsed relay does: l7/websocket.rs `inspect_websocket_text_message`). Binary, control
 * and continuation frames pass (continuations can only follow a binary start here, since a text
 * start is never let through). OpenShell decides a text message only by method WEBSOCKET_TEXT and
 * the upgrade's path and query, so the decision is known at the upgrade and no payload is read.
 * A reserved opcode or an unmasked client frame is refused the same way (OpenShell closes those too).
 */
export class WebSocketTextGate {
  private header = Buffer.alloc(0);
  /** Payload bytes of the current frame still to pass through. */
  private remaining = 0n;
  private stopped = false;

  constructor(
    private readonly forward: (chunk: Buffer) => void,
    private readonly onDenied: (why: string) => void,
  ) {}

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.stopped) {
      if (this.remaining > 0n) {
        const n = Number(this.remaining < BigInt(chunk.length - at) ? this.remaining : BigInt(chunk.length - at));
        this.forward(chunk.subarray(at, at + n));
        this.remaining -= BigInt(n);
        at += n;
        continue;
      }
      // Collect a frame header: 2 bytes, then 0/2/8 length bytes, then the 4-byte mask key.
      const need = this.headerLength();
      const take = Math.min(chunk.length - at, need - this.header.length);
      this.header = Buffer.concat([this.header, chunk.subarray(at, at + take)]);
      at += take;
      if (this.header.length < this.headerLength()) continue;
      const h = this.header;
      const opcode = (h[0] as number) & 0x0f;
      const masked = ((h[1] as number) & 0x80) !== 0;
      const len7 = (h[1] as number) & 0x7f;
      const payload = len7 === 126 ? BigInt(h.readUInt16BE(2)) : len7 === 127 ? h.readBigUInt64BE(2) : BigInt(len7);
      if (opcode === 0x1) return this.deny('a client text message (WEBSOCKET_TEXT) is not allowed by the rules for this path');
      if (![0x0, 0x2, 0x8, 0x9, 0xa].includes(opcode)) return this.deny(`reserved WebSocket opcode ${opcode}`);
      if (!masked) return this.deny('an unmasked client frame (RFC 6455 §5.1)');
      this.forward(h);
      this.header = Buffer.alloc(0);
      this.remaining = payload;
    }
  }

  private headerLength(): number {
    if (this.header.length < 2) return 2;
    const len7 = (this.header[1] as number) & 0x7f;
    const ext = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
    return 2 + ext + (((this.header[1] as number) & 0x80) !== 0 ? 4 : 0);
  }

  private deny(why: string): void {
    this.stopped = true;
    this.onDenied(why);
  }
}

/** A server-to-client close frame (unmasked) with `code`. */
export function websocketCloseFrame(code: number): Buffer {
  const b = Buffer.alloc(4);
  b[0] = 0x88;
  b[1] = 2;
  b.writeUInt16BE(code, 2);
  return b;
}
