// The store draws progress at most once a frame and state changes at once.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TransferList } from './transfers.svelte';

const progress = (done: number) =>
  ({
    type: 'transfer_progress',
    transfer_id: '7',
    bytes_done: done,
    bytes_total: 1000,
    rate: 100,
    eta_secs: 1,
    state: 'uploading',
  }) as const;

describe('TransferList', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('folds a burst of progress into one update per frame', () => {
    const list = new TransferList();
    list.apply({ type: 'transfer_state', transfer_id: '7', path: '/m/Book.txt', state: 'queued', detail: null });
    const before = list.rows;
    expect(before.get('7')?.state).toBe('queued');
    for (let done = 10; done <= 500; done += 10) list.apply(progress(done));
    expect(list.rows).toBe(before); // nothing drawn yet
    vi.advanceTimersByTime(16);
    expect(list.rows.get('7')?.bytesDone).toBe(500);
    expect(list.rows.get('7')?.state).toBe('uploading');
  });

  it('shows a state change at once, with the progress that came before it', () => {
    const list = new TransferList();
    list.apply({ type: 'transfer_state', transfer_id: '7', path: '/m/Book.txt', state: 'queued', detail: null });
    list.apply(progress(900));
    list.apply({ type: 'transfer_state', transfer_id: '7', path: '/m/Book.txt', state: 'paused', detail: null });
    expect(list.rows.get('7')?.state).toBe('paused');
    expect(list.rows.get('7')?.bytesDone).toBe(900);
    // The frame's timer finds nothing left to draw.
    const drawn = list.rows;
    vi.advanceTimersByTime(16);
    expect(list.rows).toBe(drawn);
  });
});
