// The first-screen mark: once the first real screen (sign-in or the signed-in sections)
// is in the DOM, wait for the frame that paints it, then tell the shell (ipc.uiReady),
// which logs the time since launch. bench/app_bench.py times startup by that log line.
import * as ipc from './ipc';

let sent = false;

/** Signals the first real screen once per page load; later calls do nothing. */
export function firstScreenShown(screen: 'sign_in' | 'main'): void {
  if (sent) return;
  sent = true;
  const send = (): void => void ipc.uiReady(screen).catch(() => {});
  if (typeof requestAnimationFrame !== 'function') {
    send();
    return;
  }
  // rAF runs before the next paint; the timeout after it runs once that frame is out.
  requestAnimationFrame(() => setTimeout(send, 0));
}
