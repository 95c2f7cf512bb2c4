/**
 * The canonical form of an audit record, and the fixed tail every line ends with.
 *
 * A record is hashed as `sha256(C)` where C is `JSON.stringify` (no whitespace) of the record
 * WITHOUT its `hash` member, with members in this order: ts, seq, kind, level, sandbox, id,
 * ocsf_class, the producer's fields (in the producer's insertion order; top-level names that look
 * like array indices are prefixed with `_` because JavaScript would reorder them), prev_hash.
 * The line on disk is C with `,"hash":"<64 lower-case hex>"` inserted before its final `}`, then `\n`.
 *
 * So `JSON.stringify(omit(JSON.parse(line), 'hash'))` reproduces C exactly (JSON.stringify output
 * round-trips through JSON.parse), which lets any third party verify the log with ordinary JSON
 * tools, while our verifier hashes the line bytes in place without re-serialising.
 */
export const GENESIS_HASH = '0'.repeat(64);

/** `,"prev_hash":"` + 64 hex + `","hash":"` + 64 hex + `"}` */
export const PREV_HASH_MARK = ',"prev_hash":"';
export const HASH_MARK = '","hash":"';
/** Bytes from the start of `,"prev_hash":"` to the end of the line (without the newline). */
export const TAIL_LEN = PREV_HASH_MARK.length + 64 + HASH_MARK.length + 64 + 2;
/** Bytes from the `,` before `"hash"` to the end of the line (without the newline). */
export const HASH_MEMBER_LEN = 1 + '"hash":"'.length + 64 + 2;

export const RESERVED_FIELDS: ReadonlySet<string> = new Set([
  'ts',
  'seq',
  'kind',
  'level',
  'sandbox',
  'id',
  'ocsf_class',
  'prev_hash',
  'hash',
]);

const INDEX_LIKE = /^(0|[1-9]\d*)$/;

/** Producer field names that JavaScript would move to the front of an object get a `_` prefix. */
export function safeFieldName(name: string): string {
  return INDEX_LIKE.test(name) ? `_${name}` : name;
}

export const AUDIT_FILE_RE = /^audit-(\d{6,})\.jsonl$/;

export function auditFileName(index: number): string {
  return `audit-${String(index).padStart(6, '0')}.jsonl`;
}
