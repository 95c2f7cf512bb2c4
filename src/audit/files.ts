import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AUDIT_FILE_RE } from './canonical.js';

export interface AuditFile {
  index: number;
  path: string;
}

/** Audit files in `dir`, oldest first. A missing directory has none. */
export async function listAuditFiles(dir: string): Promise<AuditFile[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const files: AuditFile[] = [];
  for (const name of names) {
    const m = AUDIT_FILE_RE.exec(name);
    if (m) files.push({ index: Number(m[1]), path: join(dir, name) });
  }
  return files.sort((a, b) => a.index - b.index);
}
