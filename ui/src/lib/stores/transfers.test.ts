// The transfers' bookkeeping: uploads and downloads in one set of rows keyed by the
// core's transfer id, following progress, state and notice events.
import { describe, expect, it } from 'vitest';
import type { DownloadItem } from '../../bindings/DownloadItem';
import type { QueueItem } from '../../bindings/QueueItem';
import {
  applyEvent,
  downloadStates,
  isRunning,
  isUnknownDownload,
  mergeDownloads,
  parseKey,
  rowsFrom,
  sortedRows,
} from './transfers';

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

const dl = (id: number, state: DownloadItem['state'], jobId = 'job-1'): DownloadItem => ({
  id,
  transfer_id: `d${id}`,
  job_id: jobId,
  which: { kind: 'book' },
  track_id: null,
  title: 'The Lighthouse',
  rel_path: `Ada/The Lighthouse/The Lighthouse ${id}.wav`,
  expected_size: 5000,
  bytes_done: 1000,
  state,
  error_code: null,
  error_message: null,
});

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
    expect(rows.get('7')).toMatchObject({ bytesDone: 400, rate: 2000, etaSecs: 3, state: 'uploading', direction: 'upload' });
    rows = applyEvent(rows, {
      type: 'transfer_state',
      transfer_id: '7',
      path: item.path,
      state: 'completed',
      detail: 'job-1',
    });
    expect(rows.get('7')).toMatchObject({ state: 'completed', jobId: 'job-1', bytesDone: 1000, detail: null });
    rows = applyEvent(rows, {
      type: 'transfer_state',
      transfer_id: '8',
      path: '/x/Other.pdf',
      state: 'failed',
      detail: 'the store refused it',
    });
    expect(rows.get('8')).toMatchObject({ fileName: 'Other.pdf', state: 'failed', detail: 'the store refused it' });
    expect(sortedRows(rows).map((r) => r.key)).toEqual(['8', '7']);
  });

  it('shows notices in words and ignores other events', () => {
    const rows = rowsFrom([item]);
    const noticed = applyEvent(rows, {
      type: 'transfer_notice',
      transfer_id: '7',
      notice: { kind: 'resumed', parts_done: 3, parts_total: 8 },
    });
    expect(noticed.get('7')?.detail).toBe('Resumed: 3 of 8 parts were already sent');
    const same = applyEvent(rows, { type: 'job_removed', job_id: 'x' });
    expect(same).toBe(rows);
    expect(applyEvent(rows, { type: 'library_changed', job_id: 'x' })).toBe(rows);
  });

  it('keeps an upload and a download with the same number apart', () => {
    expect(parseKey('7')).toEqual({ direction: 'upload', id: 7 });
    expect(parseKey('d7')).toEqual({ direction: 'download', id: 7 });
    let rows = rowsFrom([item], [dl(7, 'downloading')]);
    expect(rows.size).toBe(2);
    expect(rows.get('d7')).toMatchObject({ direction: 'download', id: 7, fileName: 'The Lighthouse 7.wav', size: 5000, bytesDone: 1000, jobId: 'job-1' });
    rows = applyEvent(rows, {
      type: 'transfer_progress',
      transfer_id: 'd7',
      bytes_done: 2500,
      bytes_total: 5000,
      rate: 1e6,
      eta_secs: 1,
      state: 'downloading',
    });
    expect(rows.get('d7')).toMatchObject({ bytesDone: 2500, state: 'downloading' });
    expect(rows.get('7')).toMatchObject({ bytesDone: 0, state: 'queued' });
    // The download was listed after the upload: it shows on top.
    expect(sortedRows(rows).map((r) => r.key)).toEqual(['d7', '7']);
  });

  it('learns downloads first seen in events from the listing', () => {
    let rows = rowsFrom([item]);
    const queued = {
      type: 'transfer_state' as const,
      transfer_id: 'd3',
      path: '/lib/Ada/The Lighthouse/The Lighthouse 3.wav',
      state: 'queued' as const,
      detail: null,
    };
    expect(isUnknownDownload(rows, queued)).toBe(true);
    rows = applyEvent(rows, queued);
    expect(rows.get('d3')).toMatchObject({ direction: 'download', fileName: 'The Lighthouse 3.wav', jobId: null });
    expect(isUnknownDownload(rows, queued)).toBe(true);
    rows = mergeDownloads(rows, [dl(3, 'queued'), dl(4, 'queued', 'job-2')]);
    expect(rows.get('d3')).toMatchObject({ jobId: 'job-1', size: 5000 });
    expect(rows.get('d4')).toMatchObject({ jobId: 'job-2' });
    expect(isUnknownDownload(rows, queued)).toBe(false);
    // Uploads are never "unknown downloads".
    expect(isUnknownDownload(rows, { ...queued, transfer_id: '99' })).toBe(false);
    // New rows from the listing go on top; known ones keep their place.
    expect(sortedRows(rows).map((r) => r.key)).toEqual(['d4', 'd3', '7']);
  });

  it('says per job whether its download is pending, failed or done', () => {
    const rows = rowsFrom([], [
      dl(1, 'completed', 'a'),
      dl(2, 'downloading', 'a'),
      dl(3, 'completed', 'b'),
      dl(4, 'failed', 'c'),
      dl(5, 'paused', 'd'),
    ]);
    const states = downloadStates(rows);
    expect(states.get('a')).toBe('downloading');
    expect(states.get('b')).toBe('done');
    expect(states.get('c')).toBe('failed');
    expect(states.get('d')).toBe('downloading');
    expect(states.has('e')).toBe(false);
    expect(isRunning('verifying')).toBe(true);
    expect(isRunning('completed')).toBe(false);
  });
});
