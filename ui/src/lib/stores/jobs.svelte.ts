// The jobs store: jobs by id (see ./jobs.ts), kept current by the job feed's events.
import type { Event as CoreEvent } from '../../bindings/Event';
import type { JobView } from '../../bindings/JobView';
import { applyJobEvent, jobsFrom, sortedJobs } from './jobs';

export class JobList {
  jobs = $state.raw<ReadonlyMap<string, JobView>>(jobsFrom([]));
  sorted = $derived(sortedJobs(this.jobs));
  /** Why the jobs could not be polled last time, when they could not. */
  problem = $state<string | null>(null);

  load(list: JobView[]): void {
    this.jobs = jobsFrom(list);
  }

  apply(event: CoreEvent): void {
    if (event.type === 'jobs_unavailable') {
      this.problem = event.message;
      return;
    }
    const next = applyJobEvent(this.jobs, event);
    if (next !== this.jobs) {
      this.jobs = next;
      this.problem = null;
    }
  }
}
