// How sizes, rates, durations and states read. Pure functions.

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

/** 1536 -> "1.5 KB" (decimal units, as file managers show them). */
export function bytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1000 && u < UNITS.length - 1) {
    v /= 1000;
    u += 1;
  }
  return u === 0 ? `${v} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${UNITS[u]}`;
}

export function rate(bytesPerSec: number): string {
  return bytesPerSec > 0 ? `${bytes(bytesPerSec)}/s` : '';
}

/** 3725 -> "1:02:05"; 65 -> "1:05". */
export function clock(secs: number): string {
  const s = Math.max(0, Math.floor(secs));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${r}` : `${m}:${r}`;
}

export function eta(secs: number | null): string {
  return secs === null ? '' : `${clock(secs)} left`;
}

const STATE_WORDS: Record<string, string> = {
  queued: 'Queued',
  hashing: 'Checking',
  uploading: 'Uploading',
  waiting: 'Retrying soon',
  offline: 'Waiting for the network',
  creating_job: 'Creating the job',
  paused: 'Paused',
  failed: 'Failed',
  cancelled: 'Cancelled',
  completed: 'Done',
  pending: 'Waiting to start',
  processing: 'Narrating',
  downloading: 'Downloading',
  verifying: 'Verifying',
};

export function stateWord(state: string): string {
  return STATE_WORDS[state] ?? state;
}

export function percent(done: number, total: number): number {
  return total > 0 ? Math.min(100, (done / total) * 100) : 0;
}
