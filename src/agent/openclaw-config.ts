/**
 * OpenClaw's configuration inside the sandbox. Every key below was checked against OpenClaw
 * 2026.9.6 (`openclaw config schema`, `openclaw config validate`, and its dist/ for the
 * environment variables): models.providers.<name>.{baseUrl,api,apiKey,models[]},
 * models.mode, models.catalogRefresh.enabled, agents.defaults.model.primary,
 * gateway.{mode,bind,port,auth.{mode,token}}, update.checkOnStart, discovery.mdns.mode,
 * tools.web.fetch.useTrustedEnvProxy.
 *
 * The config lives in the sandbox's state dir (`/sandbox/.openclaw/openclaw.json`, i.e.
 * `<workdir>/.openclaw/` on the host). Re-writing it keeps whatever the operator (or
 * `openclaw config set` inside the sandbox) added, and only replaces the keys we manage.
 */
import { join } from 'node:path';
import { NemoclawError } from '../shared/errors.js';
import { fdOwner, openOrCreateSubdir, openTrustedDir, readFileNoFollow, withDir, writeFileAtomicNoFollow } from '../shared/safe-fs.js';

/** Where OpenClaw keeps its state and config, as the agent sees it. */
export const SANDBOX_OPENCLAW_STATE_DIR = '/sandbox/.openclaw';
export const SANDBOX_NODE_DIR = '/opt/nemoclaw/node';
export const SANDBOX_OPENCLAW_DIR = '/opt/nemoclaw/openclaw';
/** The router's address as the agent sees it (the egress proxy hands it to the privacy router). */
export const INFERENCE_BASE_URL = 'http://inference.local/v1';
/** OpenClaw's default gateway port; only reachable on the sandbox's own loopback. */
export const DEFAULT_GATEWAY_PORT = 18789;
/** A loopback address nothing listens on: ClawHub lookups fail at once instead of leaving the box. */
export const REFUSED_CLAWHUB_URL = 'http://127.0.0.1:9';

export interface AgentModel {
  id: string;
  /** Display name; defaults to the id. */
  name?: string;
  contextWindow?: number;
  maxTokens?: number;
}

export interface OpenClawConfigInput {
  /** Provider name under models.providers (also the prefix of agents.defaults.model.primary). */
  providerName: string;
  models: AgentModel[];
  /** Model id (without provider prefix) to use by default; first model when absent. */
  primaryModel?: string;
  /** The per-sandbox token the privacy router accepts (never a real provider key). */
  sandboxToken: string;
  /** Token clients must present to the gateway (`openclaw agent` reads OPENCLAW_GATEWAY_TOKEN). */
  gatewayToken: string;
  gatewayPort?: number;
  baseUrl?: string;
  /** Operator allowed OpenClaw's own online features (update checks, catalog refresh, mDNS). */
  allowOnline?: boolean;
}

export type JsonObject = { [key: string]: unknown };

const PROVIDER_NAME_RE = /^[a-z][a-z0-9_-]{0,63}$/;

export function buildOpenClawConfig(input: OpenClawConfigInput): JsonObject {
  if (!PROVIDER_NAME_RE.test(input.providerName)) {
    throw new NemoclawError('invalid_input', `invalid inference provider name "${input.providerName}" for OpenClaw`, {
      nextStep: 'use lower-case letters, digits, "-" and "_", starting with a letter',
    });
  }
  if (input.models.length === 0) {
    throw new NemoclawError('invalid_input', 'the agent needs at least one model', {
      nextStep: 'list a model under the inference profile of the blueprint (or pass --model to onboard)',
    });
  }
  const primary = input.primaryModel ?? input.models[0]!.id;
  if (!input.models.some((m) => m.id === primary)) {
    throw new NemoclawError('invalid_input', `primary model "${primary}" is not in the model list`, {
      nextStep: `choose one of: ${input.models.map((m) => m.id).join(', ')}`,
    });
  }
  const online = input.allowOnline === true;
  return {
    update: { checkOnStart: online },
    models: {
      // Only our provider: the built-in catalog would point the agent at hosts the policy refuses.
      mode: 'replace',
      catalogRefresh: { enabled: online },
      providers: {
        [input.providerName]: {
          baseUrl: input.baseUrl ?? INFERENCE_BASE_URL,
          api: 'openai-completions',
          apiKey: input.sandboxToken,
          models: input.models.map((m) => ({
            id: m.id,
            name: m.name ?? m.id,
            ...(m.contextWindow !== undefined ? { contextWindow: m.contextWindow } : {}),
            ...(m.maxTokens !== undefined ? { maxTokens: m.maxTokens } : {}),
          })),
        },
      },
    },
    agents: { defaults: { model: { primary: `${input.providerName}/${primary}` } } },
    gateway: {
      mode: 'local',
      bind: 'loopback',
      port: input.gatewayPort ?? DEFAULT_GATEWAY_PORT,
      auth: { mode: 'token', token: input.gatewayToken },
    },
    discovery: { mdns: { mode: online ? 'minimal' : 'off' } },
    // OpenClaw's web_fetch resolves and dials by itself unless told to use HTTP(S)_PROXY: in the
    // loopback-only sandbox that is ENETUNREACH, no event, nothing to approve. Through the proxy
    // every fetch is decided (and held) like any other request.
    tools: { web: { fetch: { useTrustedEnvProxy: true } } },
  };
}

/** Environment for every OpenClaw process in the sandbox (gateway and `exec`'d CLI calls). */
export function openClawEnv(opts: { gatewayToken: string; allowOnline?: boolean }): Record<string, string> {
  const env: Record<string, string> = {
    HOME: '/sandbox',
    PATH: `${SANDBOX_NODE_DIR}/bin:${SANDBOX_OPENCLAW_DIR}/bin:/usr/local/bin:/usr/bin:/bin`,
    OPENCLAW_STATE_DIR: SANDBOX_OPENCLAW_STATE_DIR,
    OPENCLAW_CONFIG_PATH: `${SANDBOX_OPENCLAW_STATE_DIR}/openclaw.json`,
    OPENCLAW_GATEWAY_TOKEN: opts.gatewayToken,
    // Node 24's built-in fetch/http honour HTTP(S)_PROXY only with this set.
    NODE_USE_ENV_PROXY: '1',
    NO_COLOR: '1',
  };
  if (opts.allowOnline !== true) {
    env.OPENCLAW_NO_AUTO_UPDATE = '1';
    env.OPENCLAW_DISABLE_BONJOUR = '1';
    env.OPENCLAW_OFFLINE = '1';
    env.OPENCLAW_CLAWHUB_URL = REFUSED_CLAWHUB_URL;
  }
  return env;
}

function isPlainObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Objects merge recursively; arrays and scalars from `managed` replace. */
export function mergeManaged(existing: JsonObject, managed: JsonObject): JsonObject {
  const out: JsonObject = { ...existing };
  for (const [key, value] of Object.entries(managed)) {
    const prev = out[key];
    out[key] = isPlainObject(prev) && isPlainObject(value) ? mergeManaged(prev, value) : value;
  }
  return out;
}

export interface WrittenConfig {
  path: string;
  config: JsonObject;
  /** True when the file did not exist or its content changed. */
  changed: boolean;
}

/**
 * Write `<workdir>/.openclaw/openclaw.json` (0600, owned like the workdir so the sandbox uid can
 * read it). An unreadable existing file is refused rather than overwritten: it may hold the
 * operator's channel settings.
 *
 * This runs as root on a tree the sandbox owns, so nothing here follows a path: the workdir (whose
 * parents are root's) is opened without following its last component, `.openclaw` and the file are
 * opened relative to it with O_NOFOLLOW, and a symlink, FIFO or hard link planted there is refused
 * (see src/shared/safe-fs.ts). The file is replaced by rename, never written through.
 */
export function writeOpenClawConfig(workdir: string, managed: JsonObject): WrittenConfig {
  const path = join(workdir, '.openclaw', 'openclaw.json');
  return withDir(openTrustedDir(workdir), (workdirFd) => {
    const owner = fdOwner(workdirFd);
    const state = openOrCreateSubdir(workdirFd, '.openclaw', { mode: 0o700, owner, label: join(workdir, '.openclaw') });
    return withDir(state.fd, (stateFd) => {
      let existing: JsonObject = {};
      const raw = readFileNoFollow(stateFd, 'openclaw.json', { owner, label: path });
      const before = raw?.toString('utf8');
      if (before !== undefined) {
        try {
          const parsed: unknown = JSON.parse(before);
          if (!isPlainObject(parsed)) throw new Error('not a JSON object');
          existing = parsed;
        } catch (err) {
          throw new NemoclawError('invalid_input', `OpenClaw config ${path} is not valid JSON: ${(err as Error).message}`, {
            nextStep: `fix or remove ${path}, then start the agent again (the file is regenerated when missing)`,
          });
        }
      }
      const config = mergeManaged(existing, managed);
      const text = `${JSON.stringify(config, null, 2)}\n`;
      if (text === before) return { path, config, changed: false };
      writeFileAtomicNoFollow(stateFd, 'openclaw.json', text, { mode: 0o600, owner });
      return { path, config, changed: true };
    });
  });
}
