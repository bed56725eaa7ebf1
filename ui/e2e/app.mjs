// End-to-end test of the built app in local mode, driven through tauri-driver and
// WebKitWebDriver. Run it under a display and a D-Bus session with an unlocked keyring
// (scripts/e2e does both):
//
//   node ui/e2e/app.mjs [path/to/rohimaya-desktop]
//
// The path: create a local account; sign out and back in; upload a manuscript through
// the same command the drop zone calls (OS drag-drop cannot be synthesised); see it in
// Transfers until done; see the job complete in Audiobooks; restart the app and find the
// session and the job still there; sign out. Every step saves a screenshot in
// E2E_ARTIFACTS (default <repo>/target/e2e/). Environment: ROHIMAYA_APP, TAURI_DRIVER,
// E2E_PORT (default 4444).
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Driver } from './driver.mjs';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const target = process.env.CARGO_TARGET_DIR ?? join(repo, 'target');
const app = resolve(process.argv[2] ?? process.env.ROHIMAYA_APP ?? join(target, 'debug', 'rohimaya-desktop'));
const artifacts = process.env.E2E_ARTIFACTS ?? join(repo, 'target', 'e2e');
const manuscript = resolve(repo, '..', 'shared', 'fixtures', 'manuscripts', 'lighthouse.docx');
for (const [what, path] of [['the app binary', app], ['the fixture', manuscript]]) {
  if (!existsSync(path)) {
    console.error(`e2e: FAIL: ${what} ${path} does not exist`);
    process.exit(1);
  }
}

const dataDir = mkdtempSync(join(tmpdir(), 'rohimaya-e2e-'));
const d = new Driver(Number(process.env.E2E_PORT ?? 4444), {
  // A fresh local backend, and never the developer's real data or settings.
  ROHIMAYA_DATA_DIR: join(dataDir, 'data'),
  ROHIMAYA_CONFIG_DIR: join(dataDir, 'config'),
  ROHIMAYA_LIBRARY_DIR: join(dataDir, 'library'),
  ROHIMAYA_SUPABASE_URL: '',
  ROHIMAYA_SUPABASE_ANON_KEY: '',
  ROHIMAYA_API_URL: '',
  RUST_LOG: process.env.RUST_LOG ?? 'info',
});
const email = `e2e-${Date.now()}@example.com`;
const password = 'a long local password 42';
let step = 0;
async function done(/** @type {string} */ name) {
  step += 1;
  const file = `${String(step).padStart(2, '0')}-${name}`;
  await d.screenshot(artifacts, file);
  console.log(`e2e: ok ${file}`);
}
async function nav(/** @type {string} */ section) {
  await d.clickButton(section);
  await d.until(`the ${section} section`, async () => (await d.withText('nav button[aria-current="page"]', section))[0]);
}
const signedIn = () => d.until('the signed-in window', async () => (await d.all('nav[aria-label="Sections"]'))[0], 60_000);

let passed = false;
try {
  await d.ready();
  await d.open(app);
  await d.waitText('[data-testid="status-title"]', 'Connected to the local backend', 90_000);
  await d.waitText('h2', 'Create a local account');
  await done('first-run');

  await d.type('input[type="email"]', email);
  await d.type('input[type="password"]', password);
  await d.clickButton('Create account');
  await signedIn();
  await done('account-created');

  await nav('Settings');
  await d.clickButton('Sign out');
  await d.clickButton('Sign in with a password');
  await d.type('input[type="email"]', email);
  await d.type('input[type="password"]', password);
  await d.clickButton('Sign in');
  await signedIn();
  await done('signed-in-again');

  const offers = await d.invoke('upload_files', {
    paths: [manuscript],
    options: { title: 'The Lighthouse', author: 'E2E Author', voice: null, format: 'mp3', bitrate: null },
    force: false,
  });
  if (!Array.isArray(offers) || offers[0]?.error) throw new Error(`upload refused: ${JSON.stringify(offers)}`);
  await nav('Transfers');
  await d.waitText('[role="listitem"] .name', 'lighthouse.docx');
  await d.waitText('[role="listitem"] .state', 'Done', 60_000);
  await done('uploaded');

  await nav('Audiobooks');
  await d.waitText('.job .title', /^The Lighthouse/);
  await d.waitText('.job .status', 'Done', 90_000);
  await done('narrated');

  // Restart: the session (in the keyring) and the account's jobs are still there.
  await d.close();
  await d.open(app);
  await signedIn();
  await nav('Audiobooks');
  await d.waitText('.job .status', 'Done', 60_000);
  await done('after-restart');

  await nav('Settings');
  await d.clickButton('Sign out');
  await d.waitText('h2', /^(Sign in|Create a local account)$/);
  await done('signed-out');
  passed = true;
} catch (e) {
  console.error(`e2e: ${e instanceof Error ? e.message : String(e)}`);
  await d.screenshot(artifacts, 'failure').catch(() => {});
} finally {
  await d.stop();
  rmSync(dataDir, { recursive: true, force: true });
}

if (!passed) {
  console.error(`e2e: FAIL (screenshots in ${artifacts})`);
  process.exit(1);
}
console.log(`e2e: ${step} steps passed; screenshots in ${artifacts}`);
process.exit(0);
