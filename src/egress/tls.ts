/**
 * TLS termination for L7 on HTTPS: a per-sandbox certificate authority whose certificate the
 * sandbox trusts, and leaf certificates minted for each host on demand.
 *
 * Certificates are made by the `openssl` command (execa, argument arrays; the host name that goes
 * into an argument is validated first): Node has no X.509 builder, and the well-kept JS builders
 * either need a global `reflect-metadata` polyfill in the supervisor (@peculiar/x509) or are
 * slow pure-JS RSA (node-forge). One leaf key pair is made when the CA loads and reused for every
 * leaf, so minting is one `openssl req` (~10 ms), once per host: leaves are cached and re-minted
 * only when close to expiry. Hosts of the policy's L7 endpoints (and inference.local) are minted
 * ahead of time, so the first CONNECT normally finds its certificate ready.
 *
 * Files: `<private dir>` (0700) holds `ca.key` and `leaf.key` (0600); `<trust dir>` (0755) holds
 * only public material: `ca.pem` and `ca-bundle.pem` (system CAs + ours), bound read-only into the
 * sandbox at /opt/nemoclaw/trust.
 */
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { execa } from 'execa';
import { NemoclawError } from '../shared/errors.js';
import { ensurePrivateDir } from '../shared/home.js';
import { writeFileAtomicSync } from '../shared/fs.js';

/** Where the trust directory appears inside the sandbox (a read-only bind below /opt). */
export const SANDBOX_TRUST_DIR = '/opt/nemoclaw/trust';
/** Debian / Ubuntu system bundle, then other common places. */
export const SYSTEM_CA_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'];

const CA_DAYS = 825;
const LEAF_DAYS = 30;
/** A leaf is re-minted when less than this is left of it. */
const LEAF_RENEW_MS = 5 * 24 * 3600 * 1000;
/** A CA with less than this left is replaced at load. */
const CA_RENEW_MS = 30 * 24 * 3600 * 1000;
const MAX_CACHED_LEAVES = 2_000;
const HOST_RE = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;

/** What the sandbox needs to trust the CA: a read-only bind and the variables that point at it. */
export interface SandboxTrustBundle {
  /** Host directory with ca.pem and ca-bundle.pem (public material only). */
  source: string;
  /** Where to bind it read-only inside the sandbox. */
  target: string;
  /** Host path of the CA certificate (PEM). */
  caCertPath: string;
  /** Host path of the bundle: system CAs + our CA. */
  bundlePath: string;
  /** Environment for every sandboxed process. */
  env: Record<string, string>;
}

export interface SandboxCaOptions {
  /** Private directory (made 0700) for the keys. */
  privateDir: string;
  /** Public directory (made 0755) for ca.pem and ca-bundle.pem. */
  trustDir: string;
  /** Goes into the CA's common name, so an operator can tell CAs apart. */
  sandboxName: string;
  /** System CA bundle to append our CA to (default: the first of SYSTEM_CA_BUNDLES that exists). */
  systemBundle?: string;
  now?: () => number;
  /** The openssl binary (default `openssl` on PATH). */
  openssl?: string;
}

export interface SandboxCa {
  readonly caCertPem: string;
  readonly caCertPath: string;
  readonly bundlePath: string;
  /** TLS server context with a leaf for exactly `host` (DNS name or IP literal), minted once. */
  contextFor(host: string): Promise<SecureContext>;
  /** Mint leaves ahead of time (errors are ignored: the CONNECT will retry and report). */
  prewarm(hosts: Iterable<string>): void;
  /** How many leaves were minted (cache misses), for status and benches. */
  minted(): number;
  trustBundle(): SandboxTrustBundle;
}

/** The variables every common TLS stack reads for its trust store, pointing inside the sandbox. */
export function trustEnv(target = SANDBOX_TRUST_DIR): Record<string, string> {
  const bundle = `${target}/ca-bundle.pem`;
  return {
    // Node adds these to its own built-in roots, not the system's: with the CA alone, a tunnel that
    // is not decrypted fails under a TLS-inspecting corporate CA that curl (system store) accepts.
    NODE_EXTRA_CA_CERTS: bundle,
    SSL_CERT_FILE: bundle,
    // wget (GnuTLS) ignores SSL_CERT_FILE; its startup file names the bundle.
    WGETRC: `${target}/wgetrc`,
    REQUESTS_CA_BUNDLE: bundle,
    CURL_CA_BUNDLE: bundle,
    GIT_SSL_CAINFO: bundle,
  };
}

function opensslFailed(what: string, err: unknown): NemoclawError {
  const e = err as { code?: string; stderr?: string; message?: string };
  if (e.code === 'ENOENT') {
    return new NemoclawError('prerequisite_missing', `openssl is not installed, so the egress proxy cannot ${what}`, {
      nextStep: 'apt-get install -y openssl',
    });
  }
  return new NemoclawError('internal', `openssl could not ${what}: ${(e.stderr || e.message || String(err)).trim().slice(0, 300)}`, {
    nextStep: 'check that `openssl version` works (OpenSSL 3 is needed) and see the supervisor log',
  });
}

function certValidUntil(pem: string): number | undefined {
  try {
    return new X509Certificate(pem).validToDate.getTime();
  } catch {
    return undefined;
  }
}

const writePrivate = (path: string, data: string): void => writeFileAtomicSync(path, data, 0o600);
const writePublic = (path: string, data: string): void => writeFileAtomicSync(path, data, 0o644);

/**
 * Load the sandbox's CA from `privateDir`/`trustDir`, or make a new one (also when the files are
 * unreadable, do not match, or expire within 30 days).
 */
export async function loadOrCreateSandboxCa(opts: SandboxCaOptions): Promise<SandboxCa> {
  const now = opts.now ?? Date.now;
  const openssl = opts.openssl ?? 'openssl';
  ensurePrivateDir(opts.privateDir);
  mkdirSync(opts.trustDir, { recursive: true, mode: 0o755 });
  chmodSync(opts.trustDir, 0o755);
  const caKeyPath = join(opts.privateDir, 'ca.key');
  const leafKeyPath = join(opts.privateDir, 'leaf.key');
  const caCertPath = join(opts.trustDir, 'ca.pem');
  const bundlePath = join(opts.trustDir, 'ca-bundle.pem');

  let caCertPem: string | undefined;
  if (existsSync(caKeyPath) && existsSync(caCertPath)) {
    const pem = readFileSync(caCertPath, 'utf8');
    const until = certValidUntil(pem);
    let keyMatches = false;
    try {
      const cert = new X509Certificate(pem);
      keyMatches = cert.checkPrivateKey(createPrivateKey(readFileSync(caKeyPath)));
    } catch {
      keyMatches = false;
    }
    if (until !== undefined && until - now() > CA_RENEW_MS && keyMatches) {
      chmodSync(caKeyPath, 0o600);
      caCertPem = pem;
    }
  }
  if (!caCertPem) {
    const tmpKey = `${caKeyPath}.${process.pid}.tmp`;
    try {
      const r = await execa(
        openssl,
        [
          'req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
          '-keyout', tmpKey,
          '-subj', `/O=nemoclaw-tui/CN=nemoclaw sandbox CA (${opts.sandboxName})`,
          '-days', String(CA_DAYS),
          '-set_serial', `0x${randomBytes(12).toString('hex')}`,
          '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0',
          '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
        ],
        { timeout: 20_000 },
      );
      chmodSync(tmpKey, 0o600);
      renameSync(tmpKey, caKeyPath);
      caCertPem = r.stdout.trim() + '\n';
      writePublic(caCertPath, caCertPem);
    } catch (err) {
      throw opensslFailed('make the sandbox CA', err);
    }
  }

  // The bundle: system roots first, then ours, so ordinary HTTPS keeps verifying as before.
  const systemBundle = opts.systemBundle ?? SYSTEM_CA_BUNDLES.find((p) => existsSync(p));
  let system = '';
  if (systemBundle) {
    try {
      system = readFileSync(systemBundle, 'utf8');
    } catch {
      system = '';
    }
  }
  writePublic(join(opts.trustDir, 'wgetrc'), `# written by nemoclaw-tui: trust the system roots plus the sandbox CA\nca_certificate = ${SANDBOX_TRUST_DIR}/ca-bundle.pem\n`);
  writePublic(bundlePath, `${system}${system.endsWith('\n') || system.length === 0 ? '' : '\n'}# nemoclaw-tui sandbox CA (${opts.sandboxName})\n${caCertPem}`);

  // One key for every leaf, made once: minting then only signs. It stays on disk (0600) because
  // `openssl req -key` reads a file, and is reused by the next load so that file never changes
  // under a running instance.
  let leafKeyPem: string | undefined;
  if (existsSync(leafKeyPath)) {
    try {
      const pem = readFileSync(leafKeyPath, 'utf8');
      if (createPrivateKey(pem).asymmetricKeyType === 'ec') leafKeyPem = pem;
      chmodSync(leafKeyPath, 0o600);
    } catch {
      leafKeyPem = undefined;
    }
  }
  if (!leafKeyPem) {
    try {
      const r = await execa(openssl, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'], { timeout: 20_000 });
      leafKeyPem = r.stdout.trim() + '\n';
      writePrivate(leafKeyPath, leafKeyPem);
    } catch (err) {
      throw opensslFailed('make the leaf key', err);
    }
  }
  const leafKey = leafKeyPem;

  const cache = new Map<string, { ctx: Promise<SecureContext>; renewAt: number }>();
  let minted = 0;

  async function mint(host: string): Promise<SecureContext> {
    const ip = isIP(host) !== 0;
    if (!ip && !HOST_RE.test(host)) {
      throw new NemoclawError('invalid_input', `cannot make a certificate for "${host.slice(0, 80)}": not a DNS name or IP literal`, {
        nextStep: 'CONNECT to a plain host name (letters, digits, "-", ".")',
      });
    }
    try {
      const r = await execa(
        openssl,
        [
          'req', '-x509', '-new',
          '-key', leafKeyPath,
          '-CA', caCertPath,
          '-CAkey', caKeyPath,
          '-subj', `/CN=${host}`,
          '-days', String(LEAF_DAYS),
          '-set_serial', `0x${randomBytes(12).toString('hex')}`,
          '-addext', `subjectAltName=${ip ? 'IP' : 'DNS'}:${host}`,
          '-addext', 'basicConstraints=critical,CA:FALSE',
          '-addext', 'keyUsage=critical,digitalSignature',
          '-addext', 'extendedKeyUsage=serverAuth',
        ],
        { timeout: 20_000 },
      );
      minted++;
      return createSecureContext({ key: leafKey, cert: r.stdout, minVersion: 'TLSv1.2' });
    } catch (err) {
      throw opensslFailed(`make a certificate for ${host}`, err);
    }
  }

  function contextFor(host: string): Promise<SecureContext> {
    const hit = cache.get(host);
    if (hit && hit.renewAt > now()) return hit.ctx;
    const ctx = mint(host);
    const entry = { ctx, renewAt: now() + LEAF_DAYS * 24 * 3600 * 1000 - LEAF_RENEW_MS };
    cache.delete(host);
    cache.set(host, entry);
    if (cache.size > MAX_CACHED_LEAVES) cache.delete(cache.keys().next().value as string);
    // A failed mint is not cached: the next CONNECT tries again.
    ctx.catch(() => {
      if (cache.get(host) === entry) cache.delete(host);
    });
    return ctx;
  }

  const bundle: SandboxTrustBundle = {
    source: opts.trustDir,
    target: SANDBOX_TRUST_DIR,
    caCertPath,
    bundlePath,
    env: trustEnv(SANDBOX_TRUST_DIR),
  };

  return {
    caCertPem,
    caCertPath,
    bundlePath,
    contextFor,
    prewarm(hosts) {
      for (const h of hosts) contextFor(h).catch(() => undefined);
    },
    minted: () => minted,
    trustBundle: () => ({ ...bundle, env: { ...bundle.env } }),
  };
}
