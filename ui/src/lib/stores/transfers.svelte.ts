// The transfers store: uploads and downloads by transfer id (see ./transfers.ts),
// replaced wholesale on every change — cheap at a thousand rows, and it keeps the
// bookkeeping pure and testable. Progress events (many per second per transfer) are
// folded together and shown at most once a frame; state changes show at once.
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

/** How long progress may wait to be drawn: one frame at 60 Hz. */
const FRAME_MS = 16;

export class TransferList {
  rows = $state.raw<TransferRows>(rowsFrom([]));
  /** Progress not drawn yet (applied to `rows`, not yet published). */
  #pending: TransferRows | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  sorted = $derived(sortedRows(this.rows));
  /** Each job's download: "downloading" while any of its files is pending. */
  downloads = $derived(downloadStates(this.rows));

  load(uploads: QueueItem[], downloads: DownloadItem[] = []): void {
    this.flush();
    this.rows = rowsFrom(uploads, downloads);
  }

  /** Merges the download queue's listing (after enqueueing, or for rows seen only in events). */
  mergeDownloads(downloads: DownloadItem[]): void {
    this.flush();
    this.rows = mergeDownloads(this.rows, downloads);
  }

  /**
   * Applies `event`; returns true when it was about a download the listing has not
   * told us about yet (the caller then fetches the listing to learn its job).
   */
  apply(event: CoreEvent): boolean {
    const base = this.#pending ?? this.rows;
    const unknown = isUnknownDownload(base, event);
    const next = applyEvent(base, event);
    if (next === base) return unknown;
    if (event.type === 'transfer_progress') {
      this.#pending = next;
      this.#timer ??= setTimeout(() => this.flush(), FRAME_MS);
    } else {
      this.#pending = next;
      this.flush();
    }
    return unknown;
  }

  /** Publishes progress still waiting for its frame. */
  flush(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#pending !== null) {
      this.rows = this.#pending;
      this.#pending = null;
    }
  }
}
