// How a backend status reads to the user. Pure functions, so they are easy to test.
import type { BackendStatus } from '../bindings/BackendStatus';

/** The host (and port) of a URL, or the URL itself when it does not parse. */
export function hostOf(url: string): string {
  try {
    return new URL(url).host || url;
  } catch {
    return url;
  }
}

/** The one-line summary shown at the top of the status card. */
export function headline(status: BackendStatus): string {
  if (!status.healthy) {
    return `Cannot reach the backend: ${status.detail}`;
  }
  if (status.mode === 'local') {
    return 'Connected to the local backend';
  }
  return `Connected to ${hostOf(status.api_url)}`;
}
