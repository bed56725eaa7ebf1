// End-to-end test of the built app in local mode, driven through tauri-driver and
// WebKitWebDriver. Run it under a display and a D-Bus session with an unlocked keyring
// (scripts/e2e does both):
//
//   node ui/e2e/app.mjs [path/to/rohimaya-desktop]
//
// The path: create a local account; turn auto-download off (so the Download button is
// what brings the book down); sign out and back in; upload a manuscript through the same
// command the drop zone calls (OS drag-drop cannot be synthesised) and see its progress
// in Transfers until done; see the job complete in Audiobooks; add a watched folder
// through the command the folder picker's answer goes to, copy a manuscript into it on
// disk and see its job appear and complete; press Download on the first job and see the
// download rows in Transfers and "Downloaded" in Audiobooks; find the book in the Library
// (and the storage line); press play and see the <audio> element's time advance; quit
// and relaunch the app with the same data and keyring and find the session, the jobs and
// the library still there; sign out. Every step saves a screenshot in E2E_ARTIFACTS
// (default <repo>/target/e2e/) and prints its time. Environment: ROHIMAYA_APP,
// TAURI_DRIVER, E2E_PORT (default 4444; the native WebDriver listens on the next port).
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Driver } from './driver.mjs';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const target = process.env.CARGO_TARGET_DIR ?? join(repo, 'target');
const app = resolve(process.argv[2] ?? process.env.ROHIMAYA_APP ?? join(target, 'debug', 'rohimaya-desktop'));
const artifacts = process.env.E2E_ARTIFACTS ?? join(repo, 'target', 'e2e');
const fixtures = resolve(repo, '..', 'shared', 'fixtures', 'manuscripts');
const manuscript = join(fixtures, 'lighthouse.docx');
// A different manuscript (different bytes, so not a duplicate of the first) for the
// watched folder.
const watchedManuscript = join(fixtures, 'lighthouse.md');
for (const [what, path] of [['the app binary', app], ['the fixture', manuscript], ['the fixture', watchedManuscript]]) {
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
const watched = join(dataDir, 'watched');
mkdirSync(watched);
let step = 0;
const started = Date.now();
let last = started;
async function done(/** @type {string} */ name) {
  step += 1;
  const file = `${String(step).padStart(2, '0')}-${name}`;
  await d.screenshot(artifacts, file);
  const now = Date.now();
  console.log(`e2e: ok ${file} (${((now - last) / 1000).toFixed(1)} s, ${((now - started) / 1000).toFixed(1)} s in all)`);
  last = now;
}
/** The texts of the job row titled `title`: status, download state. */
const jobTexts = (/** @type {string} */ title) =>
  d.run(
    'const li = [...document.querySelectorAll("li.job")].find((li) => li.querySelector(".title")?.textContent.trim().startsWith(arguments[0]));' +
      'return li ? { status: li.querySelector(".status")?.textContent.trim() ?? "", downloaded: !!li.querySelector(".downloaded"), downloading: !!li.querySelector(".downloading") } : null;',
    [title],
  );
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

  // Auto-download off, so that pressing Download is what brings the book down.
  await nav('Settings');
  const autoLabel = 'Download finished audiobooks to this computer automatically';
  const label = await d.until('the auto-download setting', async () => (await d.withText('label', autoLabel))[0]);
  await d.s(`/element/${label}/click`, {});
  await d.until('auto-download off', async () => (await d.invoke('prefs', {}))?.auto_download === false, 10_000);
  await done('auto-download-off');

  await d.clickButton('Sign out');
  await d.clickButton('Sign in with a password');
  await d.type('input[type="email"]', email);
  await d.type('input[type="password"]', password);
  await d.clickButton('Sign in');
  await signedIn();
  await done('signed-in-again');

  const offers = await d.invoke('upload_files', {
    paths: [manuscript],
    options: { title: 'The Lighthouse', author: 'E2E Author', voice: null, format: 'mp3', bitrate: null, mode: null },
    force: false,
  });
  if (!Array.isArray(offers) || offers[0]?.error) throw new Error(`upload refused: ${JSON.stringify(offers)}`);
  await nav('Transfers');
  await d.waitText('[role="listitem"][aria-label^="Upload of"] .file', 'lighthouse.docx');
  // Progress: the row's bar and byte count reach the whole file, and the state says so.
  await d.until('the upload at 100 %', async () =>
    d.run(
      'const row = document.querySelector(\'[role="listitem"][aria-label="Upload of lighthouse.docx"]\');' +
        'return row && row.querySelector("progress").value === 100 && row.querySelector(".state").textContent.trim() === "Done";',
    ),
  60_000);
  await done('uploaded');

  await nav('Audiobooks');
  await d.waitText('.job .title', /^The Lighthouse/);
  await d.until('"The Lighthouse" narrated', async () => (await jobTexts('The Lighthouse'))?.status === 'Done', 90_000);
  await done('narrated');

  // A watched folder: add it the way the folder picker's answer does, then save a
  // manuscript into it on disk (written under another name and renamed into place, as
  // editors save).
  const folder = await d.invoke('add_watch_folder', {
    request: {
      path: watched,
      recursive: true,
      after_upload: 'leave',
      options: { title: null, author: 'E2E Author', voice: null, format: 'mp3', bitrate: null, mode: null },
      ignore: [],
    },
  });
  if (folder?.path !== watched) throw new Error(`add_watch_folder answered ${JSON.stringify(folder)}`);
  await nav('Watched folders');
  await d.waitText('ul.folders code', watched);
  await d.waitText('ul.folders .muted span', 'Watching');
  await done('folder-watched');
  copyFileSync(watchedManuscript, join(watched, '.incoming.tmp'));
  renameSync(join(watched, '.incoming.tmp'), join(watched, 'The Keeper.md'));
  await d.waitText('ol.log li', /\suploaded\s.*The Keeper\.md/, 60_000);
  await done('folder-upload');
  await nav('Audiobooks');
  // Its title comes from the file name.
  await d.waitText('.job .title', /^The Keeper/, 60_000);
  await d.until('two jobs', async () => (await d.all('li.job')).length === 2, 10_000);
  await d.until('both jobs narrated', async () => {
    const statuses = await d.texts('li.job .status');
    return statuses.length === 2 && statuses.every((t) => t === 'Done');
  }, 90_000);
  await done('folder-job-narrated');

  // Download the first book with its button (auto-download is off).
  if ((await jobTexts('The Lighthouse'))?.downloaded) throw new Error('the book was downloaded before Download was pressed');
  await d.click('button[aria-label="Download The Lighthouse"]');
  await d.until('"Downloading…" or "Downloaded"', async () => {
    const t = await jobTexts('The Lighthouse');
    return t && (t.downloading || t.downloaded);
  }, 30_000);
  await done('download-pressed');
  await nav('Transfers');
  await d.until('the download rows done', async () => {
    const states = await d.texts('[role="listitem"][aria-label^="Download of"] .state');
    return states.length > 0 && states.every((t) => t === 'Done');
  }, 90_000);
  await done('downloaded');
  await nav('Audiobooks');
  await d.until('"Downloaded" on the job', async () => (await jobTexts('The Lighthouse'))?.downloaded, 30_000);
  // The other job was not downloaded: the Download button is still there.
  await d.until('a Download button on the other job', async () => (await d.withText('button', 'Download')).length === 1, 10_000);
  await done('job-downloaded');

  await nav('Library');
  await d.waitText('li.book .title', 'The Lighthouse');
  await d.waitText('header .muted', /^1 book · .+ on this computer$/);
  await done('library');
  await d.click('li.book button');
  await d.waitText('.player h3', 'The Lighthouse');
  await d.until('the audio element', async () => (await d.all('audio[data-testid="audio"]'))[0], 30_000);
  await d.click('.player button.play');
  // Playing: the element's currentTime moves past where it started.
  const playedFrom = await d.run('return document.querySelector("audio").currentTime;');
  await d.until('the audio time advancing', async () => {
    const a = await d.run(
      'const a = document.querySelector("audio"); return { t: a.currentTime, error: a.error && a.error.message, code: a.error && a.error.code };',
    );
    if (a.error || a.code) throw new Error(`the audio element failed: ${a.code} ${a.error}`);
    return a.t > playedFrom + 0.5;
  }, 30_000);
  await done('playing');
  await d.click('.player button.play');

  // Restart: the session (in the keyring), the jobs and the library are still there.
  await d.close();
  await d.open(app);
  await signedIn();
  await nav('Library');
  await d.waitText('li.book .title', 'The Lighthouse', 30_000);
  await nav('Audiobooks');
  await d.until('"Downloaded" after the restart', async () => (await jobTexts('The Lighthouse'))?.downloaded, 60_000);
  await d.until('both jobs after the restart', async () => (await d.texts('li.job .status')).filter((t) => t === 'Done').length === 2, 60_000);
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
console.log(`e2e: ${step} steps passed in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${artifacts}`);
process.exit(0);
