// What "Check the server" and "Repair" in the Library say back, in plain words.
import type { SyncReport } from '../bindings/SyncReport';

const files = (n: number): string => `${n} ${n === 1 ? 'file' : 'files'}`;
const books = (n: number): string => `${n} ${n === 1 ? 'book' : 'books'}`;

/** One line for a library sync: what was queued, what the server dropped, what failed. */
export function syncSummary(r: SyncReport): string {
  const queued = r.enqueued.reduce((n, e) => n + e.queued.length, 0);
  const parts: string[] = [];
  if (queued > 0) parts.push(`${files(queued)} of ${books(r.enqueued.filter((e) => e.queued.length > 0).length)} downloading`);
  if (r.marked_only_local.length > 0)
    parts.push(`${books(r.marked_only_local.length)} no longer on the server (kept on this computer)`);
  if (r.marked_available.length > 0) parts.push(`${books(r.marked_available.length)} back on the server`);
  if (r.errors.length > 0) parts.push(`${books(r.errors.length)} could not be queued: ${r.errors[0][2].replace(/[.\s]+$/, '')}`);
  return parts.length > 0 ? `${parts.join('; ')}.` : 'The library is up to date.';
}

/** One line for a repair: how many missing or changed files download again. */
export function repairSummary(queued: number[]): string {
  return queued.length === 0
    ? 'Every file is in place.'
    : `${files(queued.length)} missing or changed: downloading again.`;
}
