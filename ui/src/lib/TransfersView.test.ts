// The transfers list: only visible rows are drawn (1,000 items stay cheap) and the
// per-item buttons call the core with the item's id.
import { mockIPC } from '@tauri-apps/api/mocks';
import { fireEvent, render, screen } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import type { DownloadItem } from '../bindings/DownloadItem';
import type { QueueItem } from '../bindings/QueueItem';
import TransfersView from './TransfersView.svelte';
import { TransferList } from './stores/transfers.svelte';

function items(n: number): QueueItem[] {
  return Array.from({ length: n }, (_, i) => ({
    id: i + 1,
    path: `/m/Book ${i + 1}.txt`,
    file_name: `Book ${i + 1}.txt`,
    size: 1000,
    state: 'queued' as const,
    error_code: null,
    error_message: null,
    job_id: null,
    object_key: null,
    parts_done: 0,
    part_count: 1,
    sha256: '',
  }));
}

describe('TransfersView', () => {
  it('draws only the visible rows of a thousand transfers', () => {
    const list = new TransferList();
    list.load(items(1000));
    render(TransfersView, { list });
    const drawn = screen.getAllByRole('listitem');
    expect(drawn.length).toBeGreaterThan(5);
    expect(drawn.length).toBeLessThan(60);
    expect(screen.getByText('Book 1000.txt')).toBeTruthy();
  });

  it('pauses one transfer and all of them', async () => {
    const calls: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd !== 'transfers_paused') calls.push([cmd, args]);
      return cmd === 'transfers_paused' ? false : null;
    });
    const list = new TransferList();
    list.load(items(1));
    render(TransfersView, { list });
    await fireEvent.click(screen.getByRole('button', { name: 'Pause Book 1.txt' }));
    await fireEvent.click(screen.getByRole('button', { name: 'Pause all' }));
    expect(calls).toEqual([
      ['transfer_action', { id: 1, action: 'pause' }],
      ['pause_all', { paused: true }],
    ]);
    expect(await screen.findByRole('button', { name: 'Resume all' })).toBeTruthy();
  });

  it('shows the stored global pause when it opens', async () => {
    mockIPC((cmd) => (cmd === 'transfers_paused' ? true : null));
    render(TransfersView, { list: new TransferList() });
    const button = await screen.findByRole('button', { name: 'Resume all' });
    expect(button.getAttribute('aria-pressed')).toBe('true');
  });

  it('lists uploads and downloads together and routes each action to its queue', async () => {
    const calls: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd !== 'transfers_paused') calls.push([cmd, args]);
      return null;
    });
    const download = (id: number, state: DownloadItem['state']): DownloadItem => ({
      id,
      transfer_id: `d${id}`,
      job_id: 'job-1',
      which: { kind: 'book' },
      track_id: null,
      title: 'Book 1',
      rel_path: `A/Book 1/Book 1 part ${id}.wav`,
      expected_size: 4000,
      bytes_done: 1000,
      state,
      error_code: null,
      error_message: null,
    });
    const list = new TransferList();
    // Upload 1 and download 1 share a number, not a key.
    list.load(items(1), [download(1, 'paused'), download(2, 'failed')]);
    render(TransfersView, { list });
    expect(screen.getAllByRole('listitem').map((e) => e.getAttribute('aria-label'))).toEqual([
      'Download of Book 1 part 2.wav',
      'Download of Book 1 part 1.wav',
      'Upload of Book 1.txt',
    ]);
    expect(screen.getByRole('progressbar', { name: 'Progress of Book 1 part 1.wav' }).getAttribute('value')).toBe('25');
    await fireEvent.click(screen.getByRole('button', { name: 'Resume Book 1 part 1.wav' }));
    await fireEvent.click(screen.getByRole('button', { name: 'Retry Book 1 part 2.wav' }));
    await fireEvent.click(screen.getByRole('button', { name: 'Cancel Book 1.txt' }));
    expect(calls).toEqual([
      ['download_action', { id: 1, action: 'resume' }],
      ['download_action', { id: 2, action: 'retry' }],
      ['transfer_action', { id: 1, action: 'cancel' }],
    ]);
    list.apply({
      type: 'transfer_progress',
      transfer_id: 'd1',
      bytes_done: 3000,
      bytes_total: 4000,
      rate: 2_000_000,
      eta_secs: 1,
      state: 'downloading',
    });
    expect(await screen.findByText('2.0 MB/s')).toBeTruthy();
    expect(screen.getByText('0:01 left')).toBeTruthy();
    expect(screen.getByRole('button', { name: 'Pause Book 1 part 1.wav' })).toBeTruthy();
  });
});
