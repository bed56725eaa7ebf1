// The jobs' bookkeeping, pure: kept current by the core's job feed events (the store in
// ./jobs.svelte.ts holds the result).
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
