// Sign-in: local mode starts with creating an account; errors are the core's words.
import { mockIPC } from '@tauri-apps/api/mocks';
import { fireEvent, render, screen } from '@testing-library/svelte';
import { describe, expect, it, vi } from 'vitest';
import type { BackendStatus } from '../bindings/BackendStatus';
import SignIn from './SignIn.svelte';

const local: BackendStatus = {
  mode: 'local',
  supabase_url: 'http://127.0.0.1:1',
  api_url: 'http://127.0.0.1:1/api',
  healthy: true,
  detail: 'ok',
  error_code: null,
};

describe('SignIn', () => {
  it('offers a local account first and signs in after creating it', async () => {
    const signedIn: unknown[] = [];
    mockIPC((cmd, args) => {
      expect(cmd).toBe('sign_up');
      expect(args).toEqual({ email: 'a@b.c', password: 'long enough 1' });
      return { kind: 'signed_in', session: { profile: 'local', signed_in: true, email: 'a@b.c', not_remembered: null, ended_reason: null } };
    });
    render(SignIn, { status: local, onsignedin: (s: unknown) => signedIn.push(s) });
    expect(screen.getByRole('heading', { name: 'Create a local account' })).toBeTruthy();
    await fireEvent.input(screen.getByLabelText('Email'), { target: { value: 'a@b.c' } });
    await fireEvent.input(screen.getByLabelText('Password'), { target: { value: 'long enough 1' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Create account' }));
    await vi.waitFor(() => expect(signedIn).toHaveLength(1));
  });

  it('shows a wrong password in the core words', async () => {
    mockIPC(() => {
      throw { code: 'invalid_credentials', message: 'Wrong email or password.' };
    });
    render(SignIn, { status: { ...local, mode: 'custom' }, onsignedin: () => {} });
    await fireEvent.input(screen.getByLabelText('Email'), { target: { value: 'a@b.c' } });
    await fireEvent.input(screen.getByLabelText('Password'), { target: { value: 'nope' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect((await screen.findByRole('alert')).textContent).toBe('Wrong email or password.');
  });
});
