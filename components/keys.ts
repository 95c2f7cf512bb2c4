/**
 * Keys that arrive together in one read. Ink's input parser already cuts escape sequences (arrows
 * `\x1b[A`, Alt-x `\x1bx`, Shift-Tab `\x1b[Z`…), backspace and Ctrl-C into events of their own, but
 * a run of plain characters read at once (`jj`, `j\r`, a held-down key over SSH, typing ahead of a
 * slow link) reaches useInput as ONE string. The TUI acts on every one of them, in order: this
 * splits such a run into one (input, key) pair per character, with the flags Ink would have set had
 * each come alone. Anything Ink parsed as a special key is returned as it is.
 */
import type { Key } from 'ink';

export interface KeyPress {
  input: string;
  key: Key;
}

const NO_KEY: Key = {
  upArrow: false,
  downArrow: false,
  leftArrow: false,
  rightArrow: false,
  pageDown: false,
  pageUp: false,
  home: false,
  end: false,
  return: false,
  escape: false,
  ctrl: false,
  shift: false,
  tab: false,
  backspace: false,
  delete: false,
  meta: false,
  super: false,
  hyper: false,
  capsLock: false,
  numLock: false,
};

function special(key: Key): boolean {
  return (
    key.upArrow || key.downArrow || key.leftArrow || key.rightArrow || key.pageDown || key.pageUp || key.home || key.end ||
    key.escape || key.ctrl || key.meta || key.tab || key.backspace || key.delete || key.return || key.super === true || key.hyper === true
  );
}

/** One character as Ink reports it when it arrives alone (raw mode: Enter is \r, Tab \t). */
export function keyOfChar(ch: string): KeyPress {
  const code = ch.codePointAt(0) ?? 0;
  if (ch === '\r' || ch === '\n') return { input: '', key: { ...NO_KEY, return: true } };
  if (ch === '\t') return { input: '', key: { ...NO_KEY, tab: true } };
  if (ch === '\u007f' || ch === '\b') return { input: '', key: { ...NO_KEY, backspace: true } };
  if (ch === '\u001b') return { input: '', key: { ...NO_KEY, escape: true } };
  if (code > 0 && code < 0x20) {
    // Ctrl-letter (Ctrl-C is split out by Ink itself; the others are rare in a run).
    return { input: String.fromCharCode(code + 0x60), key: { ...NO_KEY, ctrl: true } };
  }
  return { input: ch, key: { ...NO_KEY, shift: /^[A-Z]$/.test(ch) } };
}

export function splitKeys(input: string, key: Key): KeyPress[] {
  if (special(key) || input.length <= 1) return [{ input, key }];
  const chars = Array.from(input);
  if (chars.length <= 1) return [{ input, key }];
  return chars.map(keyOfChar);
}
