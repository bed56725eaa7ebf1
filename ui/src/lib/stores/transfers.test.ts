// The transfers' bookkeeping: rows follow progress, state and notice events.
import { describe, expect, it } from 'vitest';
import type { QueueItem } from '../../bindings/QueueItem';
import { applyEvent, rowsFrom, sortedRows } from './transfers';

const item: QueueItem = {
  id: 7,
  path: '/home/a/Book.docx',
  file_name: 'Book.docx',
  size: 1000,
  state: 'queued',
  error_code: null,
  error_message: null,
  job_id: null,
  object_key: null,
  parts_done: 0,
  part_count: 1,
  sha256: 'ab',
};

describe('transfer rows', () => {
  it('follow progress, completion and failures', () => {
    let rows = rowsFrom([item]);
    rows = applyEvent(rows, {
      type: 'transfer_progress',
      transfer_id: '7',
      bytes_done: 400,
      bytes_total: 1000,
      rate: 2000,
      eta_secs: 3,
      state: 'uploading',
    });
    expect(rows.get(7)).toMatchObject({ bytesDone: 400, rate: 2000, etaSecs: 3, state: 'uploading' });
    rows = applyEvent(rows, {
      type: 'transfer_state',
      transfer_id: '7',
      path: item.path,
      state: 'completed',
      detail: 'job-1',
    });
    expect(rows.get(7)).toMatchObject({ state: 'completed', jobId: 'job-1', bytesDone: 1000, detail: null });
    rows = applyEvent(rows, {
      type: 'transfer_state',
      transfer_id: '8',
      path: '/x/Other.pdf',
      state: 'failed',
      detail: 'the store refused it',
    });
    expect(rows.get(8)).toMatchObject({ fileName: 'Other.pdf', state: 'failed', detail: 'the store refused it' });
    expect(sortedRows(rows).map((r) => r.id)).toEqual([8, 7]);
  });

  it('shows notices in words and ignores other events', () => {
    const rows = rowsFrom([item]);
    const noticed = applyEvent(rows, {
      type: 'transfer_notice',
      transfer_id: '7',
      notice: { kind: 'resumed', parts_done: 3, parts_total: 8 },
    });
    expect(noticed.get(7)?.detail).toBe('Resumed: 3 of 8 parts were already sent');
    const same = applyEvent(rows, { type: 'job_removed', job_id: 'x' });
    expect(same).toBe(rows);
  });
});
