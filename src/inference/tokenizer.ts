/**
 * gpt-tokenizer (o200k), loaded on first use rather than at import: the policy engine imports the
 * inference part to validate `inference` sections, and `policy validate` should not pay for it.
 * One loader for the classifier (prompt counts) and the router (completion estimates when a
 * provider reports no usage).
 */

export type CountTokens = (text: string) => number;

let loading: Promise<CountTokens> | undefined;
let loaded: CountTokens | undefined;

export function loadTokenizer(): Promise<CountTokens> {
  loading ??= import('gpt-tokenizer').then((mod) => {
    loaded = mod.countTokens;
    return loaded;
  });
  return loading;
}

/** The counter when already loaded (no await on the hot path), else undefined. */
export function tokenizerIfLoaded(): CountTokens | undefined {
  return loaded;
}
