// The transfers' bookkeeping, pure: rows from the queue's listing, kept current by the
// core's progress, state and notice events (the store in ./transfers.svelte.ts holds
// the result).
import type { Event as CoreEvent } from '../../bindings/Event';
import type { ItemState } from '../../bindings/ItemState';
import type { QueueItem } from '../../bindings/QueueItem';
import type { TransferState } from '../../bindings/TransferState';

/** One row: the stored item plus what the latest events said. */
export interface TransferRow {
  id: number;
  fileName: string;
  path: string;
  size: number;
  state: TransferState | ItemState;
  bytesDone: number;
  rate: number;
  etaSecs: number | null;
  /** The error when failed, the job id when completed, a notice otherwise. */
  detail: string | null;
  jobId: string | null;
}

export function rowFromItem(item: QueueItem): TransferRow {
  const done = item.state === 'completed' ? item.size : 0;
  return {
    id: Number(item.id),
    fileName: item.file_name,
    path: item.path,
    size: Number(item.size),
    state: item.state,
    bytesDone: done,
    rate: 0,
    etaSecs: null,
    detail: item.error_message,
    jobId: item.job_id,
  };
}

function baseName(path: string): string {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] || path;
}

/** The rows after `event`; `rows` is not changed. Events for unknown ids add a row. */
export function applyEvent(
  rows: ReadonlyMap<number, TransferRow>,
  event: CoreEvent,
): ReadonlyMap<number, TransferRow> {
  if (event.type !== 'transfer_progress' && event.type !== 'transfer_state' && event.type !== 'transfer_notice') {
    return rows;
  }
  const id = Number(event.transfer_id);
  const next = new Map(rows);
  const row: TransferRow = next.get(id) ?? {
    id,
    fileName: event.type === 'transfer_state' ? baseName(event.path) : `#${id}`,
    path: event.type === 'transfer_state' ? event.path : '',
    size: 0,
    state: 'queued',
    bytesDone: 0,
    rate: 0,
    etaSecs: null,
    detail: null,
    jobId: null,
  };
  if (event.type === 'transfer_progress') {
    next.set(id, {
      ...row,
      bytesDone: Number(event.bytes_done),
      size: Number(event.bytes_total) || row.size,
      rate: event.rate,
      etaSecs: event.eta_secs === null ? null : Number(event.eta_secs),
      state: event.state,
    });
  } else if (event.type === 'transfer_state') {
    const completed = event.state === 'completed';
    next.set(id, {
      ...row,
      state: event.state,
      detail: completed ? null : event.detail,
      jobId: completed ? event.detail : row.jobId,
      bytesDone: completed ? row.size : row.bytesDone,
      rate: completed ? 0 : row.rate,
      etaSecs: completed ? null : row.etaSecs,
    });
  } else {
    next.set(id, { ...row, detail: noticeText(event.notice) ?? row.detail });
  }
  return next;
}

function noticeText(notice: Extract<CoreEvent, { type: 'transfer_notice' }>['notice']): string | null {
  switch (notice.kind) {
    case 'restarted_file_changed':
      return `Started over: ${notice.reason}`;
    case 'restarted_upload_gone':
      return 'Started over: the server had forgotten the upload';
    case 'fallback_form_upload':
      return 'Uploading through the engine (no direct upload on this server)';
    case 'resumed':
      return `Resumed: ${notice.parts_done} of ${notice.parts_total} parts were already sent`;
    case 'duplicate':
      return 'Already uploaded from this computer';
    case 'waiting_for_network':
      return 'Waiting for the network…';
    case 'busy_elsewhere':
      return notice.message;
    default:
      return null;
  }
}

/** Rows newest first. */
export function sortedRows(rows: ReadonlyMap<number, TransferRow>): TransferRow[] {
  return [...rows.values()].sort((a, b) => b.id - a.id);
}

/** The store: rows by id, replaced wholesale on every change (cheap at 1,000 rows). */

/** Rows keyed by id from the queue's listing. */
export function rowsFrom(items: QueueItem[]): ReadonlyMap<number, TransferRow> {
  return new Map(items.map((i) => [Number(i.id), rowFromItem(i)]));
}
