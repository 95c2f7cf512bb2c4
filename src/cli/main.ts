// Replaced by the CLI (issue 2).
export async function main(argv: string[]): Promise<number> {
  process.stdout.write(`nemoclaw-tui ${argv.join(' ')}\n`);
  return 0;
}
