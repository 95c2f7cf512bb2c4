import { describe, expect, it } from 'vitest';
import { detectPii } from '../../src/inference/detect.js';
import { RedactionMap, StreamRestorer } from '../../src/inference/redact.js';
import { ENTITY_KINDS } from '../../src/inference/schema.js';

const all = new Set(ENTITY_KINDS);
const PH = /<EMAIL_[0-9a-f]{6}>/g;

describe('RedactionMap', () => {
  it('gives each value one stable, unguessable placeholder per request and restores it', () => {
    const map = new RedactionMap();
    const text = 'mail bob@acme-widgets.io, then bob@acme-widgets.io again, and ann@acme-widgets.org';
    const redacted = map.redact(text, detectPii(text), all);
    const found = redacted.match(PH) ?? [];
    expect(found).toHaveLength(3);
    expect(found[0]).toBe(found[1]);
    expect(found[2]).not.toBe(found[0]);
    expect(redacted).toBe(`mail ${found[0]}, then ${found[0]} again, and ${found[2]}`);
    expect(map.restore(redacted)).toBe(text);
    expect(map.countsByKind()).toEqual({ email: 2 });
    // Another request draws other placeholders for the same value.
    const other = new RedactionMap();
    expect(other.placeholderFor('email', 'bob@acme-widgets.io')).not.toBe(found[0]);
  });

  it('escapes restored values inside JSON text, objects and keys', () => {
    const map = new RedactionMap();
    const p = map.placeholderFor('url_credentials', 'https://u:p"w\\@h.acme-widgets.io');
    const args = `{"url":"${p}"}`;
    expect(JSON.parse(map.restore(args, true))).toEqual({ url: 'https://u:p"w\\@h.acme-widgets.io' });
    expect(map.restoreDeep({ a: [p, 1], [p]: 'k' })).toEqual({ a: ['https://u:p"w\\@h.acme-widgets.io', 1], 'https://u:p"w\\@h.acme-widgets.io': 'k' });
  });

  it('restores only placeholders it issued: forged, old-style and other-kind placeholders stay as typed', () => {
    const map = new RedactionMap();
    const text = 'ip 10.0.0.1 mail a@acme-widgets.io';
    const redacted = map.redact(text, detectPii(text), new Set(['email'] as const));
    expect(redacted).toMatch(/^ip 10\.0\.0\.1 mail <EMAIL_[0-9a-f]{6}>$/);
    const issued = redacted.slice(redacted.indexOf('<'));
    expect(map.restore(`<EMAIL_1> <EMAIL_000000> <PHONE_${issued.slice(7, 13)}> ${issued}`)).toBe(
      `<EMAIL_1> <EMAIL_000000> <PHONE_${issued.slice(7, 13)}> a@acme-widgets.io`,
    );
  });

  it('never issues a placeholder the request already contains', () => {
    const draws = ['7f3a9c', '7f3a9c', '0b1c2d'];
    const map = new RedactionMap({ reserved: (p) => 'the agent typed <EMAIL_7f3a9c> itself'.includes(p), random: () => draws.shift()! });
    expect(map.placeholderFor('email', 'x@acme-widgets.io')).toBe('<EMAIL_0b1c2d>');
    expect(map.restore('<EMAIL_7f3a9c> <EMAIL_0b1c2d>')).toBe('<EMAIL_7f3a9c> x@acme-widgets.io');
  });
});

describe('StreamRestorer', () => {
  it('restores placeholders split at every position, for every chunk size', () => {
    const map = new RedactionMap();
    const email = map.placeholderFor('email', 'bob@acme-widgets.io');
    const phone = map.placeholderFor('phone', '+1 415 555 0132');
    const dob = map.placeholderFor('date_of_birth', '1980-02-03');
    const stream = `Hi ${email}, call ${phone} a < b <EMAIL_1> ${dob}${email}<x`;
    const expected = 'Hi bob@acme-widgets.io, call +1 415 555 0132 a < b <EMAIL_1> 1980-02-03bob@acme-widgets.io<x';
    for (let size = 1; size <= 12; size++) {
      const r = new StreamRestorer(map, false);
      let out = '';
      for (let i = 0; i < stream.length; i += size) out += r.push(stream.slice(i, i + size));
      out += r.flush();
      expect(out).toBe(expected);
    }
    // Two chunks split at every single position.
    for (let cut = 0; cut <= stream.length; cut++) {
      const r = new StreamRestorer(map, false);
      expect(r.push(stream.slice(0, cut)) + r.push(stream.slice(cut)) + r.flush()).toBe(expected);
    }
  });

  it('hands back a held partial that never completes', () => {
    const map = new RedactionMap();
    map.placeholderFor('email', 'x@acme-widgets.io');
    const r = new StreamRestorer(map, false);
    expect(r.push('value <EMAIL_7f')).toBe('value ');
    expect(r.pending).toBe(true);
    expect(r.flush()).toBe('<EMAIL_7f');
  });
});
