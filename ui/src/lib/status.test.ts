// The status wording, independent of any component.
import { describe, expect, it } from 'vitest';
import type { BackendStatus } from '../bindings/BackendStatus';
import { headline, hostOf } from './status';

const base: BackendStatus = {
  mode: 'local',
  supabase_url: 'http://127.0.0.1:1',
  api_url: 'http://127.0.0.1:1/api',
  healthy: true,
  detail: 'ok',
  error_code: null,
};

describe('headline', () => {
  it('reads local, custom and unhealthy backends', () => {
    expect(headline(base)).toBe('Connected to the local backend');
    expect(headline({ ...base, mode: 'custom', api_url: 'https://api.example.com:8443/x' })).toBe(
      'Connected to api.example.com:8443',
    );
    expect(headline({ ...base, healthy: false, detail: 'timed out' })).toBe(
      'Cannot reach the backend: timed out',
    );
  });
});

describe('hostOf', () => {
  it('falls back to the text when it is not a URL', () => {
    expect(hostOf('not a url')).toBe('not a url');
  });
});
