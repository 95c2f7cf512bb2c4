// Preloaded (`--import`) into a supervisor by bench/memory-soak.mjs: when $SOAK_MEM_DIR/req appears,
// run a full GC and write process.memoryUsage() to $SOAK_MEM_DIR/res. Needs --expose-gc.
import { existsSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';

const dir = process.env.SOAK_MEM_DIR;
if (dir) {
  setInterval(() => {
    if (!existsSync(`${dir}/req`)) return;
    unlinkSync(`${dir}/req`);
    globalThis.gc?.();
    globalThis.gc?.();
    writeFileSync(`${dir}/res.tmp`, JSON.stringify(process.memoryUsage()));
    renameSync(`${dir}/res.tmp`, `${dir}/res`);
  }, 200).unref();
}
