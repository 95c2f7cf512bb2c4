import { describe, expect, it } from 'vitest';
import { pathGlobToRegex } from '../../src/policy/matcher.js';

describe('path globs: a trailing /** covers the directory itself', () => {
  it('`/admin/**` matches /admin, /admin/ and /admin/users, not /administrator', () => {
    const re = pathGlobToRegex('/admin/**')!;
    expect(['/admin', '/admin/', '/admin/users', '/admin/a/b'].map((p) => re.test(p))).toEqual([true, true, true, true]);
    expect(re.test('/administrator')).toBe(false);
    expect(re.test('/')).toBe(false);
  });
  it('`/repos/*/issues` still matches exactly one segment', () => {
    const re = pathGlobToRegex('/repos/*/issues')!;
    expect(re.test('/repos/x/issues')).toBe(true);
    expect(re.test('/repos/x/y/issues')).toBe(false);
  });
});
