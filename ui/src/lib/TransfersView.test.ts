// The transfers list: only visible rows are drawn (1,000 items stay cheap) and the
// per-item buttons call the core with the item's id.
import { mockIPC } from '@tauri-apps/api/mocks';
import { fireEvent, render, screen } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
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
      calls.push([cmd, args]);
      return null;
    });
    const list = new TransferList();
    list.load(items(1));
    render(TransfersView, { list });
    await fireEvent.click(screen.getByRole('button', { name: 'Pause' }));
    await fireEvent.click(screen.getByRole('button', { name: 'Pause all' }));
    expect(calls).toEqual([
      ['transfer_action', { id: 1, action: 'pause' }],
      ['pause_all', { paused: true }],
    ]);
    expect(await screen.findByRole('button', { name: 'Resume all' })).toBeTruthy();
  });
});
