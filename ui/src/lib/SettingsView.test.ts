// Settings: preferences come from the core and go back to it on change.
import { mockIPC } from '@tauri-apps/api/mocks';
import { fireEvent, render, screen } from '@testing-library/svelte';
import { describe, expect, it, vi } from 'vitest';
import SettingsView from './SettingsView.svelte';

describe('SettingsView', () => {
  it('saves a changed preference and shows where things are', async () => {
    const saved: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'prefs') return { close_to_tray: true, notifications: true };
      if (cmd === 'set_prefs') return saved.push(args) && null;
      if (cmd === 'start_at_login') return false;
      if (cmd === 'about')
        return {
          version: '0.1.0',
          profile: 'local',
          api_url: 'http://127.0.0.1:1/api',
          config_dir: '/c',
          data_dir: '/d',
          library_dir: '/home/a/Audiobooks/Rohimaya',
          logs_dir: '/d/logs',
        };
      return null;
    });
    render(SettingsView, {
      session: { profile: 'local', signed_in: true, email: 'a@b.c', not_remembered: null, ended_reason: null },
      onsignedout: () => {},
    });
    expect(await screen.findByText('/home/a/Audiobooks/Rohimaya')).toBeTruthy();
    const tray = await screen.findByLabelText('Keep running in the tray when the window is closed');
    await fireEvent.click(tray);
    await vi.waitFor(() =>
      expect(saved).toEqual([{ prefs: { close_to_tray: false, notifications: true } }]),
    );
  });
});
