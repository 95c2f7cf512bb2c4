/** Malformed inputs shared by the robustness tests (deterministic, so a failure reproduces). */

/** `n` bytes of deterministic binary garbage (every byte value, control bytes and NULs included). */
export function garbageBytes(n: number, seed = 0x2545f491): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    // xorshift32
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Not YAML at all, repeated to about `bytes`. */
export function junkText(bytes: number): string {
  const line = 'not yaml at all {{ ]] \n';
  return line.repeat(Math.ceil(bytes / line.length));
}

/** A syntactically valid policy with `n` network policies (one host each). */
export function manyPolicies(n: number): string {
  const parts = ['version: 1\nnetwork_policies:\n'];
  for (let i = 0; i < n; i++) parts.push(`  p${i}:\n    endpoints:\n      - host: h${i}.example.com\n        port: 443\n`);
  return parts.join('');
}

export const BAD_YAML = 'version: 1\nnetwork_policies:\n  x: [\n';

export const WRONG_TYPES = 'version: "one"\nnetwork_policies: 5\n';

export const STATIC_CHANGE = `version: 1
filesystem_policy:
  read_only: [/opt]
network_policies:
  example:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: api.example.com
        port: 443
`;
