/**
 * Shared by the end-to-end tests that run the real OpenClaw in the sandbox: the machine-wide
 * install cache, the prerequisite check, and the packaged `openclaw` blueprint with one extra
 * profile whose provider is a stub upstream on loopback.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { writeManifest } from '../../src/blueprint/index.js';
import { REPO_ROOT } from './supervisor.js';

/** Installed runtimes shared by every run on this machine (directory names carry the versions). */
export const CACHE_AGENTS = process.env.NEMOCLAW_TEST_AGENT_CACHE ?? '/var/cache/nemoclaw-test/agents';

/** Throws naming what is missing (root, and each tool with the package that brings it). */
export function requireOpenClawPrerequisites(what: string, tools: readonly string[]): void {
  if (process.getuid?.() !== 0) throw new Error(`${what} needs root (the sandbox bridge, uid switch and netns join)`);
  for (const tool of tools) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      throw new Error(`${what} needs ${tool}: apt-get install -y bubblewrap strace socat util-linux (see .ci/run)`);
    }
  }
}

/** The packaged openclaw blueprint plus the profile `e2e-stub` whose only model is `model`. */
export function stubOpenClawBlueprint(dir: string, stubBaseUrl: string, model: string): string {
  const target = join(dir, 'openclaw');
  cpSync(join(REPO_ROOT, 'blueprints', 'openclaw'), target, { recursive: true });
  const file = join(target, 'blueprint.yaml');
  const doc = parseDocument(readFileSync(file, 'utf8'));
  doc.setIn(['inference', 'profiles', 'e2e-stub'], {
    description: 'stub upstream started by the e2e test',
    provider: { name: 'e2e-stub', type: 'openai', base_url: stubBaseUrl, locality: 'local' },
    models: [model],
  });
  writeFileSync(file, doc.toString());
  writeManifest(target);
  return target;
}
