// The library: books from the core's catalog, search, removal after confirming, and the
// player with its chapter list and the saved position.
import { mockIPC } from '@tauri-apps/api/mocks';
import { fireEvent, render, screen } from '@testing-library/svelte';
import { describe, expect, it, vi } from 'vitest';
import type { Book } from '../bindings/Book';
import LibraryView from './LibraryView.svelte';

const file = (rel: string) => ({ rel_path: rel, size: 1000, md5: null, etag: null });
const book: Book = {
  job_id: 'j1',
  account: 'u1',
  title: 'The Lighthouse',
  author: 'Ada Author',
  format: 'mp3',
  duration_seconds: 3725,
  book_dir: 'Ada Author/The Lighthouse',
  chapters_dir: 'Ada Author/The Lighthouse (Chapters)',
  book_file: file('Ada Author/The Lighthouse/The Lighthouse.mp3'),
  tracks: [
    { number: 1, track_id: 't1', title: 'Chapter One', duration_seconds: 60, file: file('a/01.mp3') },
    { number: 2, track_id: 't2', title: 'Chapter Two', duration_seconds: 65, file: file('a/02.mp3') },
  ],
  size_bytes: 3000,
  server_state: 'only_local',
  server_state_at: 0,
  downloaded_at: 0,
  position: { track: 2, seconds: 12, updated_at: 0 },
};

describe('LibraryView', () => {
  it('lists, searches, plays and removes', async () => {
    const calls: [string, unknown][] = [];
    let removed = false;
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      if (cmd === 'books') return removed ? [] : [book];
      if (cmd === 'library_stats') return { books: removed ? 0 : 1, files: 3, bytes: 3000, only_local: 1 };
      if (cmd === 'playback')
        return {
          job_id: 'j1',
          book_url: 'http://127.0.0.1:9/tok/books/j1/book',
          chapters: [
            { number: 1, title: 'Chapter One', duration_seconds: 60, url: 'http://127.0.0.1:9/tok/books/j1/tracks/1' },
            { number: 2, title: 'Chapter Two', duration_seconds: 65, url: 'http://127.0.0.1:9/tok/books/j1/tracks/2' },
          ],
          position: book.position,
        };
      if (cmd === 'remove_book') {
        removed = true;
        return { deleted: [], already_missing: [], dirs_removed: [], bytes_freed: 3000 };
      }
      return null;
    });
    render(LibraryView);
    expect(await screen.findByText('The Lighthouse')).toBeTruthy();
    expect(screen.getByText('L')).toBeTruthy();
    expect(screen.getByText('only on this computer')).toBeTruthy();
    expect(await screen.findByText('1 book · 3.0 KB on this computer')).toBeTruthy();

    await fireEvent.input(screen.getByLabelText('Search the library'), { target: { value: 'ada' } });
    await vi.waitFor(() => expect(calls).toContainEqual(['books', { query: 'ada' }]));

    await fireEvent.click(screen.getByRole('button', { name: 'Play' }));
    const current = await screen.findByRole('button', { name: /Chapter Two/ });
    expect(current.getAttribute('aria-current')).toBe('true');
    const audio = screen.getByTestId('audio');
    expect(audio.getAttribute('src')).toBe('http://127.0.0.1:9/tok/books/j1/tracks/2');

    vi.spyOn(window, 'confirm').mockReturnValue(true);
    await fireEvent.click(screen.getByRole('button', { name: 'Remove download' }));
    expect(await screen.findByText('No book matches.')).toBeTruthy();
    expect(calls).toContainEqual(['remove_book', { jobId: 'j1' }]);
  });

  it('opens and plays the book a notification asked for, once it is listed', async () => {
    mockIPC((cmd) => {
      if (cmd === 'books') return [book];
      if (cmd === 'library_stats') return { books: 1, files: 3, bytes: 3000, only_local: 1 };
      if (cmd === 'playback')
        return { job_id: 'j1', book_url: 'http://127.0.0.1:9/tok/books/j1/book', chapters: [], position: null };
      return null;
    });
    const play = vi.spyOn(HTMLMediaElement.prototype, 'play').mockResolvedValue(undefined);
    render(LibraryView, { open: { job_id: 'j1', play: true } });
    expect(await screen.findByRole('region', { name: 'Player: The Lighthouse' })).toBeTruthy();
    const audio = await screen.findByTestId('audio');
    expect(audio.getAttribute('src')).toBe('http://127.0.0.1:9/tok/books/j1/book');
    await fireEvent.loadedMetadata(audio);
    expect(play).toHaveBeenCalled();
    play.mockRestore();
  });

  it('checks the server and repairs, saying what happened', async () => {
    const calls: string[] = [];
    mockIPC((cmd) => {
      calls.push(cmd);
      if (cmd === 'books') return [book];
      if (cmd === 'library_stats') return { books: 1, files: 3, bytes: 3000, only_local: 0 };
      if (cmd === 'sync_library')
        return {
          enqueued: [{ job_id: 'j2', title: 'Second', queued: [4, 5], already: 0 }],
          marked_only_local: [],
          marked_available: [],
          errors: [],
        };
      if (cmd === 'repair_library') return [];
      return null;
    });
    render(LibraryView);
    await screen.findByText('The Lighthouse');
    await fireEvent.click(screen.getByRole('button', { name: 'Check the server' }));
    expect((await screen.findByRole('status')).textContent).toBe('2 files of 1 book downloading.');
    await fireEvent.click(screen.getByRole('button', { name: 'Repair' }));
    await vi.waitFor(() => expect(screen.getByRole('status').textContent).toBe('Every file is in place.'));
    expect(calls).toContain('sync_library');
    expect(calls).toContain('repair_library');
  });
});
