// The transfers store: rows by id (see ./transfers.ts), replaced wholesale on every
// change — cheap at a thousand rows, and it keeps the bookkeeping pure and testable.
import type { Event as CoreEvent } from '../../bindings/Event';
import type { QueueItem } from '../../bindings/QueueItem';
import { applyEvent, rowsFrom, sortedRows, type TransferRow } from './transfers';

export class TransferList {
  rows = $state.raw<ReadonlyMap<number, TransferRow>>(rowsFrom([]));
  sorted = $derived(sortedRows(this.rows));

  load(items: QueueItem[]): void {
    this.rows = rowsFrom(items);
  }

  apply(event: CoreEvent): void {
    const next = applyEvent(this.rows, event);
    if (next !== this.rows) this.rows = next;
  }
}
