// The transfers store: uploads and downloads by transfer id (see ./transfers.ts),
// replaced wholesale on every change — cheap at a thousand rows, and it keeps the
// bookkeeping pure and testable.
import type { DownloadItem } from '../../bindings/DownloadItem';
import type { Event as CoreEvent } from '../../bindings/Event';
import type { QueueItem } from '../../bindings/QueueItem';
import {
  applyEvent,
  downloadStates,
  isUnknownDownload,
  mergeDownloads,
  rowsFrom,
  sortedRows,
  type TransferRows,
} from './transfers';

export class TransferList {
  rows = $state.raw<TransferRows>(rowsFrom([]));
  sorted = $derived(sortedRows(this.rows));
  /** Each job's download: "downloading" while any of its files is pending. */
  downloads = $derived(downloadStates(this.rows));

  load(uploads: QueueItem[], downloads: DownloadItem[] = []): void {
    this.rows = rowsFrom(uploads, downloads);
  }

  /** Merges the download queue's listing (after enqueueing, or for rows seen only in events). */
  mergeDownloads(downloads: DownloadItem[]): void {
    this.rows = mergeDownloads(this.rows, downloads);
  }

  /**
   * Applies `event`; returns true when it was about a download the listing has not
   * told us about yet (the caller then fetches the listing to learn its job).
   */
  apply(event: CoreEvent): boolean {
    const unknown = isUnknownDownload(this.rows, event);
    const next = applyEvent(this.rows, event);
    if (next !== this.rows) this.rows = next;
    return unknown;
  }
}
