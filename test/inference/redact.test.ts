import { describe, expect, it } from 'vitest';
import { detectPii } from '../../src/inference/detect.js';
import { RedactionMap, StreamRestorer } from '../../src/inference/redact.js';
import { ENTITY_KINDS } from '../../src/inference/schema.js';

const all = new Set(ENTITY_KINDS);

describe('RedactionMap', () => {
  it('gives each value one stable placeholder and restores it', () => {
    const map = new RedactionMap();
    const text = 'mail bob@example.com, then bob@example.com again, and ann@example.org';
    const redacted = map.redact(text, detectPii(text), all);
    expect(redacted).toBe('mail <EMAIL_1>, then <EMAIL_1> again, and <EMAIL_2>');
    expect(map.restore(redacted)).toBe(text);
    expect(map.countsByKind()).toEqual({ email: 2 });
  });

  it('escapes restored values inside JSON text and objects', () => {
    const map = new RedactionMap();
    const p = map.placeholderFor('url_credentials', 'https://u:p"w\\@h.example');
    const args = `{"url":"${p}"}`;
    expect(JSON.parse(map.restore(args, true))).toEqual({ url: 'https://u:p"w\\@h.example' });
    expect(map.restoreDeep({ a: [p, 1] })).toEqual({ a: ['https://u:p"w\\@h.example', 1] });
  });

  it('leaves unknown placeholders and kinds not selected alone', () => {
    const map = new RedactionMap();
    const text = 'ip 10.0.0.1 mail a@b.example';
    expect(map.redact(text, detectPii(text), new Set(['email'] as const))).toBe('ip 10.0.0.1 mail <EMAIL_1>');
    expect(map.restore('<EMAIL_9> <EMAIL_1>')).toBe('<EMAIL_9> a@b.example');
  });
});

describe('StreamRestorer', () => {
  it('restores placeholders split across any chunk boundary', () => {
    const map = new RedactionMap();
    map.placeholderFor('email', 'bob@example.com');
    map.placeholderFor('phone', '+1 415 555 0132');
    const stream = 'Hi <EMAIL_1>, call <PHONE_1> a < b <EMAIL_1>';
    const expected = 'Hi bob@example.com, call +1 415 555 0132 a < b bob@example.com';
    for (let size = 1; size <= 9; size++) {
      const r = new StreamRestorer(map, false);
      let out = '';
      for (let i = 0; i < stream.length; i += size) out += r.push(stream.slice(i, i + size));
      out += r.flush();
      expect(out).toBe(expected);
    }
  });

  it('hands back a held partial that never completes', () => {
    const map = new RedactionMap();
    map.placeholderFor('email', 'x@y.example');
    const r = new StreamRestorer(map, false);
    expect(r.push('value <EMA')).toBe('value ');
    expect(r.pending).toBe(true);
    expect(r.flush()).toBe('<EMA');
  });
});
