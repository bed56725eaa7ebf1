import { describe, expect, it } from 'vitest';
import { coverFor } from './cover';

describe('coverFor', () => {
  it('takes two initials, skipping articles, and a stable hue', () => {
    expect(coverFor('The Lighthouse Keeper', 'Ada').initials).toBe('LK');
    expect(coverFor('émile', null).initials).toBe('É');
    expect(coverFor('', null).initials).toBe('?');
    const a = coverFor('Book', 'X');
    expect(coverFor('Book', 'X')).toEqual(a);
    expect(a.hue).toBeGreaterThanOrEqual(0);
    expect(a.hue).toBeLessThan(360);
    expect(coverFor('Book', 'Y').hue).not.toBe(a.hue);
  });
});
