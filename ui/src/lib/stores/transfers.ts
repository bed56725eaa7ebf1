// The transfers' bookkeeping, pure: uploads (from the queue's listing) and downloads
// (from the download queue's listing) in one set of rows keyed by the core's transfer id
// — "<id>" for an upload, "d<id>" for a download — kept current by the core's progress,
// state and notice events (the store in ./transfers.svelte.ts holds the result).
import type { DownloadItem } from '../../bindings/DownloadItem';
import type { DownloadState } from '../../bindings/DownloadState';
import type { Event as CoreEvent } from '../../bindings/Event';
import type { ItemState } from '../../bindings/ItemState';
import type { QueueItem } from '../../bindings/QueueItem';
import type { TransferState } from '../../bindings/TransferState';

export type Direction = 'upload' | 'download';

/** One row: the stored item plus what the latest events said. */
export interface TransferRow {
  /** The transfer id of its events: "12" (upload 12) or "d12" (download 12). */
  key: string;
  /** The row id in its own queue (what transfer_action / download_action take). */
  id: number;
  direction: Direction;
  fileName: string;
  path: string;
  size: number;
  state: TransferState | ItemState | DownloadState;
  bytesDone: number;
  rate: number;
  etaSecs: number | null;
  /** The error when failed, a notice otherwise (uploads: the job id once completed). */
  detail: string | null;
  /** Uploads: the job created from it; downloads: the job whose audiobook it is. */
  jobId: string | null;
  /** Arrival order (higher is newer): the list shows the newest first. */
  seq: number;
}

export type TransferRows = ReadonlyMap<string, TransferRow>;

/** The key of a transfer id: downloads start with "d", uploads are plain numbers. */
export function parseKey(key: string): { direction: Direction; id: number } {
  return key.startsWith('d') ? { direction: 'download', id: Number(key.slice(1)) } : { direction: 'upload', id: Number(key) };
}

export function rowFromItem(item: QueueItem, seq = Number(item.id)): TransferRow {
  const done = item.state === 'completed' ? item.size : 0;
  return {
    key: String(item.id),
    id: Number(item.id),
    direction: 'upload',
    fileName: item.file_name,
    path: item.path,
    size: Number(item.size),
    state: item.state,
    bytesDone: done,
    rate: 0,
    etaSecs: null,
    detail: item.error_message,
    jobId: item.job_id,
    seq,
  };
}

export function rowFromDownload(item: DownloadItem, seq = Number(item.id)): TransferRow {
  const size = Number(item.expected_size ?? 0);
  return {
    key: item.transfer_id,
    id: Number(item.id),
    direction: 'download',
    fileName: baseName(item.rel_path),
    path: item.rel_path,
    size,
    state: item.state,
    bytesDone: item.state === 'completed' && size > 0 ? size : Number(item.bytes_done),
    rate: 0,
    etaSecs: null,
    detail: item.error_message,
    jobId: item.job_id,
    seq,
  };
}

function baseName(path: string): string {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] || path;
}

function nextSeq(rows: TransferRows): number {
  let max = 0;
  for (const r of rows.values()) max = Math.max(max, r.seq);
  return max + 1;
}

/** The rows after `event`; `rows` is not changed. Events for unknown ids add a row. */
export function applyEvent(rows: TransferRows, event: CoreEvent): TransferRows {
  if (event.type !== 'transfer_progress' && event.type !== 'transfer_state' && event.type !== 'transfer_notice') {
    return rows;
  }
  const key = event.transfer_id;
  const { direction, id } = parseKey(key);
  const next = new Map(rows);
  const row: TransferRow = next.get(key) ?? {
    key,
    id,
    direction,
    fileName: event.type === 'transfer_state' ? baseName(event.path) : `#${key}`,
    path: event.type === 'transfer_state' ? event.path : '',
    size: 0,
    state: 'queued',
    bytesDone: 0,
    rate: 0,
    etaSecs: null,
    detail: null,
    jobId: null,
    seq: nextSeq(rows),
  };
  if (event.type === 'transfer_progress') {
    next.set(key, {
      ...row,
      bytesDone: Number(event.bytes_done),
      size: Number(event.bytes_total) || row.size,
      rate: event.rate,
      etaSecs: event.eta_secs === null ? null : Number(event.eta_secs),
      state: event.state,
    });
  } else if (event.type === 'transfer_state') {
    const completed = event.state === 'completed';
    next.set(key, {
      ...row,
      fileName: row.fileName.startsWith('#') ? baseName(event.path) : row.fileName,
      path: row.path || event.path,
      state: event.state,
      detail: completed ? null : event.detail,
      jobId: completed ? event.detail : row.jobId,
      bytesDone: completed ? Math.max(row.size, row.bytesDone) : row.bytesDone,
      rate: completed ? 0 : row.rate,
      etaSecs: completed ? null : row.etaSecs,
    });
  } else {
    next.set(key, { ...row, detail: noticeText(event.notice) ?? row.detail });
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
    case 'download_restarted':
      return `Started over: ${notice.reason}`;
    case 'download_resumed':
      return 'Resumed from the partly downloaded file';
    default:
      return null;
  }
}

/** Rows newest first. */
export function sortedRows(rows: TransferRows): TransferRow[] {
  return [...rows.values()].sort((a, b) => b.seq - a.seq);
}

/**
 * Rows from the two queues' listings: uploads first, then downloads (a book downloads
 * after its manuscript went up), each oldest first, so the newest show on top.
 */
export function rowsFrom(uploads: QueueItem[], downloads: DownloadItem[] = []): TransferRows {
  const rows = new Map<string, TransferRow>();
  const up = [...uploads].sort((a, b) => Number(a.id) - Number(b.id));
  const down = [...downloads].sort((a, b) => Number(a.id) - Number(b.id));
  let seq = 0;
  for (const i of up) rows.set(String(i.id), rowFromItem(i, ++seq));
  for (const d of down) rows.set(d.transfer_id, rowFromDownload(d, ++seq));
  return rows;
}

/**
 * The rows with the download queue's listing merged in: known rows keep their place and
 * gain what only the listing knows (the job, the expected size); new ones go on top.
 */
export function mergeDownloads(rows: TransferRows, downloads: DownloadItem[]): TransferRows {
  const next = new Map(rows);
  let seq = nextSeq(rows);
  for (const d of [...downloads].sort((a, b) => Number(a.id) - Number(b.id))) {
    const known = next.get(d.transfer_id);
    if (known) {
      next.set(d.transfer_id, {
        ...known,
        jobId: d.job_id,
        size: known.size || Number(d.expected_size ?? 0),
        fileName: baseName(d.rel_path),
      });
    } else {
      next.set(d.transfer_id, rowFromDownload(d, seq++));
    }
  }
  return next;
}

/** A download event for a row the listing has not told us about (auto-download, sync). */
export function isUnknownDownload(rows: TransferRows, event: CoreEvent): boolean {
  return (
    (event.type === 'transfer_state' || event.type === 'transfer_progress') &&
    event.transfer_id.startsWith('d') &&
    !rows.get(event.transfer_id)?.jobId
  );
}

const RUNNING = new Set(['queued', 'hashing', 'uploading', 'waiting', 'offline', 'creating_job', 'downloading', 'verifying']);

/** Still going (so pause and cancel apply). */
export function isRunning(state: string): boolean {
  return RUNNING.has(state);
}

/** Where each job's audiobook download stands, from the download rows. */
export function downloadStates(rows: TransferRows): ReadonlyMap<string, 'downloading' | 'failed' | 'done'> {
  const out = new Map<string, 'downloading' | 'failed' | 'done'>();
  for (const r of rows.values()) {
    if (r.direction !== 'download' || !r.jobId) continue;
    const prev = out.get(r.jobId);
    if (isRunning(r.state) || r.state === 'paused') out.set(r.jobId, 'downloading');
    else if (r.state === 'failed' && prev !== 'downloading') out.set(r.jobId, 'failed');
    else if (r.state === 'completed' && prev === undefined) out.set(r.jobId, 'done');
  }
  return out;
}
