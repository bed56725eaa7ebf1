// The backend commands the webview may call (see src-tauri/commands.rs), typed with the
// bindings generated from rohimaya-core.
import { invoke } from '@tauri-apps/api/core';
import type { BackendStatus } from '../bindings/BackendStatus';

/** Which backend the app uses, with a fresh health check. */
export function backendStatus(): Promise<BackendStatus> {
  return invoke<BackendStatus>('backend_status');
}
