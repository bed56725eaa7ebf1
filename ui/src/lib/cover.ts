// The generated cover of a book: up to two initials and a hue derived from the title and
// author, so the same book always gets the same cover. Pure.

export interface Cover {
  initials: string;
  hue: number;
}

export function coverFor(title: string, author: string | null): Cover {
  const words = title
    .split(/\s+/)
    .map((w) => w.replace(/^[^\p{L}\p{N}]+/u, ''))
    .filter((w) => w.length > 0 && !/^(the|a|an)$/i.test(w));
  const picked = words.length > 0 ? words : [title || '?'];
  const initials = picked
    .slice(0, 2)
    .map((w) => [...w][0]?.toUpperCase() ?? '')
    .join('');
  let hash = 0;
  for (const ch of `${title}\u0000${author ?? ''}`) {
    hash = (hash * 31 + (ch.codePointAt(0) ?? 0)) >>> 0;
  }
  return { initials: initials || '?', hue: hash % 360 };
}
