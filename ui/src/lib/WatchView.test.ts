// Watched folders: adding one goes through the folder picker and the settings sheet;
// folder state and activity arrive as core events.
import { emit } from '@tauri-apps/api/event';
import { mockIPC } from '@tauri-apps/api/mocks';
import { fireEvent, render, screen } from '@testing-library/svelte';
import { describe, expect, it, vi } from 'vitest';
import type { WatchedFolder } from '../bindings/WatchedFolder';
import WatchView from './WatchView.svelte';

const folder: WatchedFolder = {
  id: 1,
  path: '/home/a/Manuscripts',
  recursive: true,
  after_upload: 'move_to_uploaded',
  options: { title: null, author: 'Ada', voice: null, format: 'mp3', bitrate: null, mode: null },
  ignore: [],
  paused: false,
  available: true,
  unavailable_reason: null,
};

describe('WatchView', () => {
  it('adds a folder and follows its state and activity', async () => {
    const added: unknown[] = [];
    let list: WatchedFolder[] = [];
    mockIPC(
      (cmd, args) => {
        if (cmd === 'watch_folders') return list;
        if (cmd === 'watch_activity') return [];
        if (cmd === 'plugin:dialog|open') return '/home/a/Manuscripts';
        if (cmd === 'add_watch_folder') {
          added.push(args);
          list = [folder];
          return folder;
        }
        return null;
      },
      { shouldMockEvents: true },
    );
    render(WatchView);
    await fireEvent.click(await screen.findByRole('button', { name: 'Add folder…' }));
    await fireEvent.change(await screen.findByLabelText('After upload'), { target: { value: 'move_to_uploaded' } });
    await fireEvent.input(screen.getByLabelText('Author'), { target: { value: 'Ada' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Watch this folder' }));
    expect(await screen.findByText('Watching')).toBeTruthy();
    expect(added[0]).toMatchObject({
      request: { path: '/home/a/Manuscripts', recursive: true, after_upload: 'move_to_uploaded', options: { author: 'Ada' } },
    });

    await emit('core-event', { type: 'watch_folder_state', ...folder, available: false, unavailable_reason: 'the folder is gone' });
    expect(await screen.findByText('Unavailable: the folder is gone')).toBeTruthy();
    await emit('core-event', {
      type: 'watch_activity',
      id: 7,
      at_ms: 0,
      folder_id: 1,
      path: '/home/a/Manuscripts/~$Book.docx',
      kind: 'ignored',
      detail: 'an Office lock file',
    });
    await vi.waitFor(() => expect(screen.getByText(/an Office lock file/)).toBeTruthy());
  });
});
