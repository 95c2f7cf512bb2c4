/**
 * What the sandbox may learn when a provider cannot be reached or fails mid-response. Node and
 * undici errors name the provider's address (`connect ECONNREFUSED 127.0.0.1:39073`, `getaddrinfo
 * ENOTFOUND api.example.com`, `Connect Timeout Error (attempted address: host:443, ...)`, TLS
 * altname errors with host names): the caller gets a classification only (`connection refused`,
 * `DNS lookup failed`, ...), the audit event keeps the full text.
 */
import type { ProviderConfig } from './schema.js';

const DNS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAI_NODATA', 'EAI_ADDRFAMILY', 'EAI_SERVICE']);
const UNREACHABLE = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EHOSTDOWN', 'EADDRNOTAVAIL']);
const RESET = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED']);
const TLS_CODES = new Set([
  'EPROTO',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'HOSTNAME_MISMATCH',
]);

function codeOf(err: unknown): string | undefined {
  // undici sometimes wraps the socket's error in `cause`; the outermost code that says something wins.
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code.length > 0) return code;
  }
  return undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * A short, address-free description of a network failure talking to a provider: what kind of
 * failure it was, never the host, port, URL or the raw error text.
 */
export function classifyUpstreamError(err: unknown): string {
  const code = codeOf(err);
  const message = messageOf(err);
  const name = err instanceof Error ? err.name : '';
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code && DNS.has(code)) return 'DNS lookup failed';
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'connection timed out';
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return 'timed out waiting for the response';
  if (code === 'UND_ERR_BODY_TIMEOUT') return 'timed out waiting for the response body';
  if (code && UNREACHABLE.has(code)) return 'network unreachable';
  if (
    (code && (TLS_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || code.startsWith('ERR_OSSL_'))) ||
    /\bTLS\b|\bSSL\b|certificate/i.test(message)
  ) {
    return 'TLS failure';
  }
  if (code && RESET.has(code)) return 'connection reset';
  if (code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') return 'response shorter or longer than its content-length';
  if (code === 'UND_ERR_RESPONSE_EXCEEDED_MAX_SIZE') return 'response too large';
  if (code?.startsWith('HPE_')) return 'response is not valid HTTP';
  if (code === 'UND_ERR_ABORTED' || name === 'AbortError') return 'request aborted';
  if (code === 'ERR_INVALID_URL' || code === 'UND_ERR_INVALID_ARG' || code === 'ERR_INVALID_ARG_TYPE') return 'invalid provider address in the policy';
  return 'network error';
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * `text` (provider-authored or built from what a provider sent) with the provider's own address
 * taken out: its base URL, `host:port` and host name, and any IPv4 literal. Defence in depth for
 * messages the router writes around provider content; the classification above is the rule for
 * errors the router itself sees.
 */
export function scrubUpstreamAddress(text: string, provider: ProviderConfig | undefined): string {
  let out = text;
  if (provider) {
    let url: URL | undefined;
    try {
      url = new URL(provider.base_url);
    } catch {
      url = undefined;
    }
    const needles = [provider.base_url.replace(/\/+$/, '')];
    if (url) {
      needles.push(url.origin, url.host);
      const bare = url.hostname.replace(/^\[|\]$/g, '');
      if (bare.length >= 3) needles.push(url.hostname, bare);
    }
    for (const n of [...new Set(needles)].filter((s) => s.length > 0).sort((x, y) => y.length - x.length)) {
      if (out.toLowerCase().includes(n.toLowerCase())) out = out.replace(new RegExp(escapeRe(n), 'gi'), '<provider>');
    }
  }
  // IPv4 literals, with or without a port.
  return out.replace(/\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b/g, '<address>');
}
