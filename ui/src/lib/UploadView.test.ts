// Upload: chosen files get the details sheet, then each a specific answer; a duplicate
// can be sent again on purpose.
import { mockIPC } from '@tauri-apps/api/mocks';
import { fireEvent, render, screen } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import UploadView from './UploadView.svelte';

describe('UploadView', () => {
  it('sends chosen files with the sheet’s details and shows each answer', async () => {
    const uploads: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'plugin:dialog|open') return ['/m/Good.docx', '/m/Again.txt'];
      if (cmd === 'upload_files') {
        uploads.push(args);
        const force = (args as { force: boolean }).force;
        if (force) return [{ path: '/m/Again.txt', transfer_id: '9', error: null }];
        return [
          { path: '/m/Good.docx', transfer_id: '8', error: null },
          {
            path: '/m/Again.txt',
            transfer_id: null,
            error: { code: 'duplicate_upload', message: 'was already uploaded from this computer' },
          },
        ];
      }
      return null;
    });
    render(UploadView);
    await fireEvent.click(screen.getByRole('button', { name: 'Choose files…' }));
    expect(await screen.findByText('2 files')).toBeTruthy();
    await fireEvent.input(screen.getByLabelText('Author'), { target: { value: 'Ada' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Upload' }));
    expect(await screen.findByText(/was already uploaded from this computer/)).toBeTruthy();
    expect(uploads[0]).toMatchObject({
      paths: ['/m/Good.docx', '/m/Again.txt'],
      options: { author: 'Ada', title: null, format: 'mp3' },
      force: false,
    });
    await fireEvent.click(screen.getByRole('button', { name: 'Upload again anyway' }));
    await screen.findAllByText(/queued — see Transfers/);
    expect(uploads[1]).toMatchObject({ paths: ['/m/Again.txt'], force: true });
    expect(screen.getAllByText(/queued — see Transfers/)).toHaveLength(2);
  });
});
