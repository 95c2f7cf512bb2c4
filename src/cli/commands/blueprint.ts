/** `blueprint verify DIR`, `blueprint list`, `blueprint manifest DIR`, `blueprint sign DIR --key FILE`. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { listStore, packageKeysDir, signDigest, verifyBlueprint, writeManifest } from '../../blueprint/index.js';
import { NemoclawError } from '../../shared/errors.js';
import { homePaths } from '../../shared/home.js';
import { EXIT, action, commandGroup, type CliContext } from '../util.js';
import type { CommandModule } from './index.js';

function trustedKeyDirs(ctx: CliContext): string[] {
  return [homePaths(ctx.home).trustedKeysDir, packageKeysDir()];
}

export const blueprintCommands: CommandModule = {
  register(program: Command): void {
    const group = commandGroup(program, 'blueprint', 'verify, list and sign digest-pinned blueprints');

    group
      .command('verify')
      .description('recompute every file against MANIFEST, the digest and the signature; exit 1 naming the first mismatch')
      .argument('<dir>', 'blueprint directory')
      .option('--json', 'print the result as JSON')
      .action(
        action(async (ctx, dir: string, opts: { json?: boolean }) => {
          const v = verifyBlueprint(dir, { trustedKeyDirs: trustedKeyDirs(ctx) });
          if (opts.json) {
            ctx.json(v);
            return EXIT.ok;
          }
          const signer = v.signature.state === 'trusted' ? `signed by ${v.signature.keyId} (${v.signature.keySource})` : 'unsigned';
          ctx.out(`blueprint ${v.name} ${v.version}: ${v.files} files verified, digest ${v.digest}, ${signer}`);
          return EXIT.ok;
        }),
      );

    group
      .command('list')
      .description('blueprints in the content-addressed store ($NEMOCLAW_HOME/blueprints)')
      .option('--json', 'print the list as JSON')
      .action(
        action(async (ctx, opts: { json?: boolean }) => {
          const entries = listStore(homePaths(ctx.home).blueprintStore, { trustedKeyDirs: trustedKeyDirs(ctx) });
          if (opts.json) {
            ctx.json(entries);
            return EXIT.ok;
          }
          if (entries.length === 0) {
            ctx.out('no blueprints in the store yet (they are added when a sandbox is created from one)');
            return EXIT.ok;
          }
          ctx.out(`${'NAME'.padEnd(16)} ${'VERSION'.padEnd(10)} ${'DIGEST'.padEnd(24)} ${'SIGNER'.padEnd(18)} STATE`);
          for (const e of entries) {
            ctx.out(`${e.name.padEnd(16)} ${e.version.padEnd(10)} ${`${e.digest.slice(0, 19)}…`.padEnd(24)} ${e.signer.padEnd(18)} ${e.ok ? 'ok' : `BROKEN: ${e.problem ?? ''}`}`);
          }
          return entries.every((e) => e.ok) ? EXIT.ok : EXIT.failure;
        }),
      );

    group
      .command('manifest')
      .description('write MANIFEST (sha256 of every file) for a blueprint you are authoring')
      .argument('<dir>', 'blueprint directory')
      .action(
        action(async (ctx, dir: string) => {
          ctx.out(`wrote ${join(dir, 'MANIFEST')}: digest ${writeManifest(dir)}`);
          return EXIT.ok;
        }),
      );

    group
      .command('sign')
      .description('write MANIFEST and an Ed25519 SIGNATURE over the digest')
      .argument('<dir>', 'blueprint directory')
      .requiredOption('--key <file>', 'Ed25519 private key (PEM, e.g. from `openssl genpkey -algorithm ed25519`)')
      .action(
        action(async (ctx, dir: string, opts: { key: string }) => {
          let pem: Buffer;
          try {
            pem = readFileSync(opts.key);
          } catch (err) {
            throw new NemoclawError('not_found', `cannot read the signing key ${opts.key}`, { exitCode: EXIT.usage, nextStep: 'pass --key with a readable PEM file', cause: err });
          }
          const digest = writeManifest(dir);
          const sig = signDigest(dir, digest, pem);
          ctx.out(`signed ${dir}: digest ${digest}, key ${sig.key_id}`);
          ctx.out(`operators trust it by putting your public key (*.pub, PEM) in $NEMOCLAW_HOME/trusted-keys/`);
          return EXIT.ok;
        }),
      );
  },
};
