// The signed-in window's wiring of downloads: a download seen only in events (auto-
// download) is looked up in the listing so its job reads "Downloading…", and the
// `library_changed` event reloads the library (the job then reads "Downloaded", the
// Library view lists the book with its storage line).
import { emit } from '@tauri-apps/api/event';
import { mockIPC } from '@tauri-apps/api/mocks';
import { fireEvent, render, screen } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import App from './App.svelte';
import type { Book } from './bindings/Book';
import type { DownloadItem } from './bindings/DownloadItem';
import type { JobView } from './bindings/JobView';
import { ALERT_FOLLOW_UP, CORE_EVENT } from './lib/ipc';

const job: JobView = {
  id: 'j1',
  title: 'The Lighthouse',
  author: null,
  status: 'completed',
  progress_percent: 100,
  current_step: null,
  error_message: null,
  audio_format: 'wav',
  duration_seconds: 65,
  file_size_bytes: 4000,
  created_at: '2026-01-01',
  completed_at: '2026-01-01',
};

const item: DownloadItem = {
  id: 5,
  transfer_id: 'd5',
  job_id: 'j1',
  which: { kind: 'book' },
  track_id: null,
  title: 'The Lighthouse',
  rel_path: 'Unknown/The Lighthouse/The Lighthouse.wav',
  expected_size: 4000,
  bytes_done: 0,
  state: 'queued',
  error_code: null,
  error_message: null,
};

const book = { job_id: 'j1', title: 'The Lighthouse', author: null, duration_seconds: 65, size_bytes: 4000, tracks: [], server_state: 'available' } as unknown as Book;

describe('App with downloads', () => {
  it('follows an auto-download to the library', async () => {
    const calls: string[] = [];
    let listed: DownloadItem[] = [];
    let landed = false;
    mockIPC(
      (cmd) => {
        if (cmd.startsWith('plugin:')) return null;
        calls.push(cmd);
        switch (cmd) {
          case 'backend_status':
            return { mode: 'local', supabase_url: 'x', api_url: 'y', healthy: true, detail: 'ok', error_code: null };
          case 'session':
            return { profile: 'local', signed_in: true, email: 'a@example.com', not_remembered: null, ended_reason: null };
          case 'transfers':
            return [];
          case 'download_list':
            return listed;
          case 'jobs':
            return [job];
          case 'books':
            return landed ? [book] : [];
          case 'library_stats':
            return { books: landed ? 1 : 0, files: landed ? 1 : 0, bytes: landed ? 4000 : 0, only_local: 0 };
          default:
            return null;
        }
      },
      { shouldMockEvents: true },
    );
    render(App);
    await fireEvent.click(await screen.findByRole('button', { name: 'Audiobooks' }));
    expect(await screen.findByRole('button', { name: 'Download The Lighthouse' })).toBeTruthy();

    // Auto-download queued it: the event names only "d5"; the listing says whose it is.
    listed = [item];
    await emit(CORE_EVENT, { type: 'transfer_state', transfer_id: 'd5', path: '/l/The Lighthouse.wav', state: 'queued', detail: null });
    expect(await screen.findByText('Downloading…')).toBeTruthy();
    expect(calls.filter((c) => c === 'download_list').length).toBe(2);
    expect(screen.queryByRole('button', { name: 'Download The Lighthouse' })).toBeNull();

    // It landed and the library catalogued it.
    landed = true;
    listed = [{ ...item, state: 'completed', bytes_done: 4000 }];
    await emit(CORE_EVENT, { type: 'transfer_state', transfer_id: 'd5', path: '/l/The Lighthouse.wav', state: 'completed', detail: 'j1' });
    await emit(CORE_EVENT, { type: 'library_changed', job_id: 'j1' });
    expect(await screen.findByText('Downloaded')).toBeTruthy();

    await fireEvent.click(screen.getByRole('button', { name: 'Library' }));
    expect(await screen.findByText('1 book · 4.0 KB on this computer')).toBeTruthy();
    const before = calls.filter((c) => c === 'books').length;
    await emit(CORE_EVENT, { type: 'library_changed', job_id: 'j1' });
    await screen.findByText('The Lighthouse');
    // The open Library view reloads too (and the shelf of downloaded jobs).
    await expect.poll(() => calls.filter((c) => c === 'books').length).toBeGreaterThanOrEqual(before + 2);
  });

  it("goes where a notification's button says", async () => {
    mockIPC(
      (cmd) => {
        switch (cmd) {
          case 'backend_status':
            return { mode: 'local', supabase_url: 'x', api_url: 'y', healthy: true, detail: 'ok', error_code: null };
          case 'session':
            return { profile: 'local', signed_in: true, email: 'a@example.com', not_remembered: null, ended_reason: null };
          case 'jobs':
            return [job];
          case 'books':
            return [book];
          case 'library_stats':
            return { books: 1, files: 1, bytes: 4000, only_local: 0 };
          case 'playback':
            return { job_id: 'j1', book_url: 'http://127.0.0.1:9/t/books/j1/book', chapters: [], position: null };
          default:
            return cmd === 'transfers' || cmd === 'download_list' ? [] : null;
        }
      },
      { shouldMockEvents: true },
    );
    render(App);
    const transfers = await screen.findByRole('button', { name: 'Transfers' });
    await emit(ALERT_FOLLOW_UP, { view: 'transfers' });
    await expect.poll(() => transfers.getAttribute('aria-current')).toBe('page');
    await emit(ALERT_FOLLOW_UP, { view: 'book', job_id: 'j1', play: false });
    expect(await screen.findByRole('region', { name: 'Player: The Lighthouse' })).toBeTruthy();
    expect(screen.getByRole('button', { name: 'Library' }).getAttribute('aria-current')).toBe('page');
  });
});
