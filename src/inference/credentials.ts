/**
 * Provider keys live outside the sandbox: in the supervisor's environment (named by the provider's
 * `api_key_env`) or in the 0600 credentials file `$NEMOCLAW_HOME/credentials.json`
 * (`{"<credential>": "<key>"}` or `{"<credential>": {"api_key": "<key>"}}`). They are never taken
 * from argv and never logged. The sandbox authenticates with a per-sandbox token instead.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { NemoclawError } from '../shared/errors.js';
import type { ProviderConfig } from './schema.js';

export interface CredentialSource {
  /** The key for a provider, or undefined when it needs none (local servers). Throws when configured but missing. */
  keyFor(providerName: string, provider: ProviderConfig): string | undefined;
}

export class FileAndEnvCredentials implements CredentialSource {
  private cache: { mtimeMs: number; size: number; data: Record<string, unknown> } | undefined;

  constructor(
    private readonly credentialsFile: string | undefined,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  keyFor(providerName: string, provider: ProviderConfig): string | undefined {
    if (provider.api_key_env) {
      const v = this.env[provider.api_key_env];
      if (v && v.length > 0) return v;
      if (!provider.credential) {
        throw new NemoclawError('prerequisite_missing', `provider "${providerName}": environment variable ${provider.api_key_env} is not set in the supervisor`, {
          nextStep: `export ${provider.api_key_env} before starting the supervisor, or store the key in the credentials file`,
        });
      }
    }
    if (provider.credential) {
      const data = this.readFile();
      const entry = data[provider.credential];
      const key = typeof entry === 'string' ? entry : (entry as { api_key?: unknown } | undefined)?.api_key;
      if (typeof key === 'string' && key.length > 0) return key;
      throw new NemoclawError('prerequisite_missing', `provider "${providerName}": no key "${provider.credential}" in ${this.credentialsFile}`, {
        nextStep: `add {"${provider.credential}": "<key>"} to ${this.credentialsFile} (mode 0600)`,
      });
    }
    return undefined;
  }

  private readFile(): Record<string, unknown> {
    if (!this.credentialsFile) return {};
    let st;
    try {
      st = statSync(this.credentialsFile);
    } catch {
      return {};
    }
    if ((st.mode & 0o077) !== 0) {
      throw new NemoclawError('denied', `credentials file ${this.credentialsFile} is readable by group or others (mode ${(st.mode & 0o777).toString(8)})`, {
        nextStep: `chmod 600 ${this.credentialsFile}`,
      });
    }
    if (this.cache && this.cache.mtimeMs === st.mtimeMs && this.cache.size === st.size) return this.cache.data;
    try {
      const data = JSON.parse(readFileSync(this.credentialsFile, 'utf8')) as unknown;
      if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new Error('not a JSON object');
      this.cache = { mtimeMs: st.mtimeMs, size: st.size, data: data as Record<string, unknown> };
      return this.cache.data;
    } catch (err) {
      // Never echo the file content: it holds keys.
      throw new NemoclawError('invalid_input', `credentials file ${this.credentialsFile} is not valid JSON (${(err as Error).name})`, {
        nextStep: 'write it as {"<credential name>": "<key>"}',
      });
    }
  }
}

/** Read or create the per-sandbox token (0600). */
export function loadOrCreateSandboxToken(file: string): string {
  try {
    const existing = readFileSync(file, 'utf8').trim();
    if (existing.length >= 32) {
      chmodSync(file, 0o600);
      return existing;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new NemoclawError('io', `cannot read the inference token ${file}: ${(err as Error).message}`, {
        nextStep: 'check the permissions of the sandbox directory under $NEMOCLAW_HOME',
      });
    }
  }
  const token = `nmc-${randomBytes(24).toString('base64url')}`;
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return token;
}

export function tokensEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The token the caller presented: `Authorization: Bearer …` (OpenAI) or `x-api-key` (Anthropic). */
export function presentedToken(headers: Record<string, string | string[] | undefined>): string | undefined {
  const auth = headers['authorization'];
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (m) return m[1];
  }
  const apiKey = headers['x-api-key'];
  return typeof apiKey === 'string' ? apiKey.trim() : undefined;
}
