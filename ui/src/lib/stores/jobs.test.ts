// The jobs' bookkeeping: changed jobs replace, removed jobs go, order is newest first.
import { describe, expect, it } from 'vitest';
import type { JobView } from '../../bindings/JobView';
import { applyJobEvent, jobDownload, jobsFrom, sortedJobs } from './jobs';

const job = (id: string, status: string, created: string): JobView => ({
  id,
  title: `Book ${id}`,
  author: null,
  status,
  progress_percent: null,
  current_step: null,
  error_message: null,
  audio_format: 'mp3',
  duration_seconds: null,
  file_size_bytes: null,
  created_at: created,
  completed_at: null,
});

describe('jobs', () => {
  it('apply changes and removals', () => {
    let jobs = jobsFrom([job('a', 'processing', '2026-01-01'), job('b', 'pending', '2026-01-02')]);
    jobs = applyJobEvent(jobs, { type: 'job_changed', job: job('a', 'completed', '2026-01-01') });
    expect(jobs.get('a')?.status).toBe('completed');
    jobs = applyJobEvent(jobs, { type: 'job_removed', job_id: 'b' });
    expect([...jobs.keys()]).toEqual(['a']);
    jobs = applyJobEvent(jobs, { type: 'job_changed', job: job('c', 'pending', '2026-01-03') });
    expect(sortedJobs(jobs).map((j) => j.id)).toEqual(['c', 'a']);
    expect(applyJobEvent(jobs, { type: 'job_removed', job_id: 'zz' })).toBe(jobs);
  });

  it('say whether a completed job is downloaded, downloading or can be downloaded', () => {
    const done = job('a', 'completed', '2026-01-01');
    const none = new Map<string, 'downloading' | 'failed' | 'done'>();
    expect(jobDownload(job('a', 'processing', '2026-01-01'), new Set(['a']), none)).toBeNull();
    expect(jobDownload(done, new Set(), none)).toBe('available');
    expect(jobDownload(done, new Set(['a']), none)).toBe('downloaded');
    expect(jobDownload(done, new Set(['a']), new Map([['a', 'downloading']]))).toBe('downloading');
    expect(jobDownload(done, new Set(), new Map([['a', 'failed']]))).toBe('failed');
    expect(jobDownload(done, new Set(), new Map([['a', 'done']]))).toBe('available');
  });
});
