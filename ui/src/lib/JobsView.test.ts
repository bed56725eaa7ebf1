// The Audiobooks view: "Download" on a completed job enqueues the book and its tracks,
// the row then reads "Downloading…" from the download queue and "Downloaded" once the
// library has the book.
import { mockIPC } from '@tauri-apps/api/mocks';
import { fireEvent, render, screen } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import type { Book } from '../bindings/Book';
import type { DownloadItem } from '../bindings/DownloadItem';
import type { JobView } from '../bindings/JobView';
import JobsView from './JobsView.svelte';
import { JobList } from './stores/jobs.svelte';
import { LibraryShelf } from './stores/library.svelte';
import { TransferList } from './stores/transfers.svelte';

const job = (id: string, status: string): JobView => ({
  id,
  title: `Book ${id}`,
  author: null,
  status,
  progress_percent: status === 'processing' ? 40 : null,
  current_step: null,
  error_message: null,
  audio_format: 'wav',
  duration_seconds: 65,
  file_size_bytes: 4000,
  created_at: `2026-01-0${id.length}`,
  completed_at: null,
});

const row = (state: DownloadItem['state']): DownloadItem => ({
  id: 1,
  transfer_id: 'd1',
  job_id: 'a',
  which: { kind: 'book' },
  track_id: null,
  title: 'Book a',
  rel_path: 'Unknown/Book a/Book a.wav',
  expected_size: 4000,
  bytes_done: 0,
  state,
  error_code: null,
  error_message: null,
});

describe('JobsView', () => {
  it('downloads a completed job and shows where its download stands', async () => {
    const calls: unknown[] = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      if (cmd === 'download') return { job_id: 'a', title: 'Book a', queued: [1], already: 0 };
      if (cmd === 'download_list') return [row('queued')];
      return null;
    });
    const list = new JobList();
    list.load([job('a', 'completed'), job('bb', 'processing')]);
    const transfers = new TransferList();
    const library = new LibraryShelf();
    render(JobsView, { list, transfers, library });
    // Only the completed job can be downloaded.
    expect(screen.queryByRole('button', { name: 'Download Book bb' })).toBeNull();
    await fireEvent.click(screen.getByRole('button', { name: 'Download Book a' }));
    expect(await screen.findByText('Downloading…')).toBeTruthy();
    expect(calls).toEqual([
      ['download', { jobId: 'a', choice: 'all' }],
      ['download_list', {}],
    ]);
    expect(screen.queryByRole('button', { name: 'Download Book a' })).toBeNull();
    // The file landed and the library catalogued the book.
    transfers.apply({ type: 'transfer_state', transfer_id: 'd1', path: '/l/Book a.wav', state: 'completed', detail: 'a' });
    library.load([{ job_id: 'a' } as Book]);
    expect(await screen.findByText('Downloaded')).toBeTruthy();
    expect(screen.queryByText('Downloading…')).toBeNull();
    expect(screen.queryByRole('button', { name: 'Download Book a' })).toBeNull();
  });

  it('shows the error when the download cannot be queued and offers it again', async () => {
    mockIPC((cmd) => {
      if (cmd === 'download') throw { code: 'disk_full', message: 'not enough space for Book a' };
      return null;
    });
    const list = new JobList();
    list.load([job('a', 'completed')]);
    render(JobsView, { list, transfers: new TransferList(), library: new LibraryShelf() });
    await fireEvent.click(screen.getByRole('button', { name: 'Download Book a' }));
    expect((await screen.findByRole('alert')).textContent).toBe('not enough space for Book a');
    expect(screen.getByRole('button', { name: 'Download Book a' })).toBeTruthy();
  });
});
