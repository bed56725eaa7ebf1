// The Library's sync and repair answers, worded from the core's reports.
import { describe, expect, it } from 'vitest';
import { repairSummary, syncSummary } from './librarySync';

describe('librarySync', () => {
  it('says what a sync queued, marked and could not do', () => {
    expect(syncSummary({ enqueued: [], marked_only_local: [], marked_available: [], errors: [] })).toBe(
      'The library is up to date.',
    );
    expect(
      syncSummary({
        enqueued: [
          { job_id: 'a', title: 'A', queued: [1, 2, 3], already: 0 },
          { job_id: 'b', title: 'B', queued: [], already: 4 },
        ],
        marked_only_local: ['c'],
        marked_available: [],
        errors: [['d', 'offline', 'You are offline.']],
      }),
    ).toBe(
      '3 files of 1 book downloading; 1 book no longer on the server (kept on this computer); 1 book could not be queued: You are offline.',
    );
  });

  it('says whether a repair found anything', () => {
    expect(repairSummary([])).toBe('Every file is in place.');
    expect(repairSummary([7])).toBe('1 file missing or changed: downloading again.');
  });
});
