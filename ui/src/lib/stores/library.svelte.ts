// Which jobs the offline library holds, and a counter that goes up whenever the core
// says the library changed (a book landed, or its server state changed): the Library
// view reloads on it, the Audiobooks view marks those jobs "Downloaded".
import type { Book } from '../../bindings/Book';
import { jobIdsOf } from './jobs';

export class LibraryShelf {
  jobIds = $state.raw<ReadonlySet<string>>(jobIdsOf([]));
  /** Goes up on every `library_changed` event. */
  version = $state(0);

  load(books: Book[]): void {
    this.jobIds = jobIdsOf(books);
  }

  changed(): void {
    this.version += 1;
  }
}
