// Test setup: jest-dom style matchers are not needed; just reset Tauri's IPC mocks.
import { clearMocks } from '@tauri-apps/api/mocks';
import { afterEach } from 'vitest';

afterEach(() => {
  clearMocks();
});

// jsdom has no layout: `bind:clientHeight` needs a ResizeObserver, which never fires
// here (components keep their default sizes).
class NoLayoutResizeObserver {
  observe(): void {}
  unobserve(): void {}
  disconnect(): void {}
}
globalThis.ResizeObserver ??= NoLayoutResizeObserver;
