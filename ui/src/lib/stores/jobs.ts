// The jobs' bookkeeping, pure: kept current by the core's job feed events (the store in
// ./jobs.svelte.ts holds the result).
import type { Book } from '../../bindings/Book';
import type { Event as CoreEvent } from '../../bindings/Event';
import type { JobView } from '../../bindings/JobView';

/** The jobs after `event`; `jobs` is not changed. */
export function applyJobEvent(
  jobs: ReadonlyMap<string, JobView>,
  event: CoreEvent,
): ReadonlyMap<string, JobView> {
  if (event.type === 'job_changed') {
    const next = new Map(jobs);
    next.set(event.job.id, event.job);
    return next;
  }
  if (event.type === 'job_removed' && jobs.has(event.job_id)) {
    const next = new Map(jobs);
    next.delete(event.job_id);
    return next;
  }
  return jobs;
}

/** Newest first. */
export function sortedJobs(jobs: ReadonlyMap<string, JobView>): JobView[] {
  return [...jobs.values()].sort((a, b) => (b.created_at ?? '').localeCompare(a.created_at ?? ''));
}

/** Jobs keyed by id. */
export function jobsFrom(list: JobView[]): ReadonlyMap<string, JobView> {
  return new Map(list.map((j) => [j.id, j]));
}

/** What a job's row says about its audiobook on this computer. */
export type JobDownload = 'downloaded' | 'downloading' | 'failed' | 'available' | null;

/**
 * A completed job is "downloaded" when the library has it, "downloading" while the
 * download queue has a file of it pending, "failed" when its download failed, else
 * "available" (the Download button). Jobs not completed have nothing to download.
 */
export function jobDownload(
  job: JobView,
  inLibrary: ReadonlySet<string>,
  downloads: ReadonlyMap<string, 'downloading' | 'failed' | 'done'>,
): JobDownload {
  if (job.status !== 'completed') return null;
  const queued = downloads.get(job.id);
  if (queued === 'downloading') return 'downloading';
  if (inLibrary.has(job.id)) return 'downloaded';
  if (queued === 'failed') return 'failed';
  return 'available';
}

/** The jobs the library holds a book of. */
export function jobIdsOf(books: readonly Pick<Book, 'job_id'>[]): ReadonlySet<string> {
  return new Set(books.map((b) => b.job_id));
}
