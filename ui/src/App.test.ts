// The window against a mocked Tauri IPC: the status card shows each backend state.
import { mockIPC } from '@tauri-apps/api/mocks';
import { fireEvent, render, screen } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import App from './App.svelte';
import type { BackendStatus } from './bindings/BackendStatus';
import type { SessionView } from './bindings/SessionView';

const local: BackendStatus = {
  mode: 'local',
  supabase_url: 'http://127.0.0.1:54321',
  api_url: 'http://127.0.0.1:54321/api',
  healthy: true,
  detail: 'ok',
  error_code: null,
};

const signedOut: SessionView = {
  profile: 'local',
  signed_in: false,
  email: null,
  not_remembered: null,
  ended_reason: null,
};

function answer(...statuses: BackendStatus[]): string[] {
  const calls: string[] = [];
  mockIPC(
    (cmd) => {
      if (cmd.startsWith('plugin:')) return null;
      calls.push(cmd);
      if (cmd === 'backend_status') {
        return statuses.length > 1 ? statuses.shift() : statuses[0];
      }
      if (cmd === 'session') return signedOut;
      throw new Error(`unexpected command ${cmd}`);
    },
    { shouldMockEvents: true },
  );
  return calls;
}

describe('App', () => {
  it('shows the title', () => {
    answer(local);
    render(App);
    expect(screen.getByRole('heading', { level: 1 }).textContent).toBe('Rohimaya');
  });

  it('shows a healthy local backend with its URLs', async () => {
    const calls = answer(local);
    render(App);
    const title = await screen.findByText('Connected to the local backend');
    expect(title.closest('section')?.className).toContain('ok');
    expect(screen.getByText(local.api_url)).toBeTruthy();
    expect(screen.getByText(local.supabase_url)).toBeTruthy();
    expect(calls.filter((c) => c === 'backend_status')).toEqual(['backend_status']);
  });

  it('names the host of a configured backend', async () => {
    answer({
      ...local,
      mode: 'custom',
      supabase_url: 'https://abc.supabase.co',
      api_url: 'https://engine.example.com/v1',
    });
    render(App);
    expect(await screen.findByText('Connected to engine.example.com')).toBeTruthy();
  });

  it('shows why the backend cannot be reached, then recovers on "Check again"', async () => {
    const down: BackendStatus = {
      ...local,
      healthy: false,
      detail: 'connection refused',
      error_code: 'network_unreachable',
    };
    const calls = answer(down, local);
    render(App);
    const title = await screen.findByText('Cannot reach the backend: connection refused');
    expect(title.closest('section')?.className).toContain('error');

    await fireEvent.click(screen.getByRole('button', { name: 'Check again' }));
    expect(await screen.findByText('Connected to the local backend')).toBeTruthy();
    expect(calls.filter((c) => c === 'backend_status')).toEqual(['backend_status', 'backend_status']);
  });

  it('shows a failed command as an error', async () => {
    mockIPC(() => {
      throw new Error('IPC is down');
    });
    render(App);
    expect(await screen.findByText(/^Cannot reach the backend: .*IPC is down/)).toBeTruthy();
  });
});
