// Test setup: jest-dom style matchers are not needed; just reset Tauri's IPC mocks.
import { clearMocks } from '@tauri-apps/api/mocks';
import { afterEach } from 'vitest';

afterEach(() => {
  clearMocks();
});
