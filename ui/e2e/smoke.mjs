// End-to-end smoke test of the built app: starts tauri-driver (which drives the app
// through WebKitWebDriver), opens the app with a fresh data directory, and asserts the
// window says it is connected to the local backend. Plain W3C WebDriver over HTTP; no
// test framework. Run under a display, e.g.:
//
//   xvfb-run -a node ui/e2e/smoke.mjs [path/to/rohimaya-desktop]
//
// The app binary defaults to $CARGO_TARGET_DIR/debug/rohimaya-desktop, else the
// repository's target/debug/rohimaya-desktop (what `npx tauri build --debug --no-bundle`
// makes). Environment: ROHIMAYA_APP (the app binary, if not given as an argument),
// TAURI_DRIVER (default: tauri-driver on PATH, then ~/.cargo/bin/tauri-driver),
// E2E_PORT (default 4444), E2E_TIMEOUT_MS (default 90000), E2E_SCREENSHOT (a PNG path).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const port = Number(process.env.E2E_PORT ?? 4444);
const timeoutMs = Number(process.env.E2E_TIMEOUT_MS ?? 90_000);
const base = `http://127.0.0.1:${port}`;
/** The W3C WebDriver key of an element reference. */
const ELEMENT_KEY = 'element-6066-11e4-a52e-4f735466cecf';

const app = resolve(process.argv[2] ?? process.env.ROHIMAYA_APP ?? defaultApp());
if (!existsSync(app)) {
  fail(`the app binary ${app} does not exist: build it first (npx tauri build --debug --no-bundle)`);
}

function defaultApp() {
  const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const target = process.env.CARGO_TARGET_DIR ?? join(repo, 'target');
  return join(target, 'debug', 'rohimaya-desktop');
}

function driverPath() {
  if (process.env.TAURI_DRIVER) return process.env.TAURI_DRIVER;
  const cargoBin = join(homedir(), '.cargo', 'bin', 'tauri-driver');
  return existsSync(cargoBin) ? cargoBin : 'tauri-driver';
}

/** @param {string} message */
function fail(message) {
  console.error(`e2e: FAIL: ${message}`);
  process.exit(1);
}

/**
 * One WebDriver call; returns `value` or throws with the driver's error.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
async function wd(method, path, body) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = /** @type {{ value: any }} */ (await res.json());
  if (!res.ok) {
    const v = json.value ?? {};
    throw new Error(`${method} ${path}: ${res.status} ${v.error ?? ''} ${v.message ?? ''}`);
  }
  return json.value;
}

async function waitForDriver() {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${base}/status`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(250);
  }
  throw new Error(`tauri-driver did not listen on ${base} within 30 s`);
}

const dataDir = mkdtempSync(join(tmpdir(), 'rohimaya-e2e-'));
const driver = spawn(driverPath(), ['--port', String(port)], {
  stdio: ['ignore', 'inherit', 'inherit'],
  env: {
    ...process.env,
    // A fresh local backend, and never the developer's real data or settings.
    ROHIMAYA_DATA_DIR: join(dataDir, 'data'),
    ROHIMAYA_CONFIG_DIR: join(dataDir, 'config'),
    ROHIMAYA_LIBRARY_DIR: join(dataDir, 'library'),
    ROHIMAYA_SUPABASE_URL: '',
    ROHIMAYA_SUPABASE_ANON_KEY: '',
    ROHIMAYA_API_URL: '',
    RUST_LOG: process.env.RUST_LOG ?? 'info',
  },
});
let driverExited = false;
driver.on('exit', () => {
  driverExited = true;
});
driver.on('error', (e) => fail(`cannot start tauri-driver (${e.message}): cargo install tauri-driver --locked`));

let sessionId = null;
let passed = false;
try {
  await waitForDriver();
  const session = await wd('POST', '/session', {
    capabilities: { alwaysMatch: { 'tauri:options': { application: app } } },
  });
  sessionId = session.sessionId;
  console.log(`e2e: session ${sessionId} for ${app}`);

  const deadline = Date.now() + timeoutMs;
  let text = '';
  let lastError = '';
  while (Date.now() < deadline) {
    try {
      const el = await wd('POST', `/session/${sessionId}/element`, {
        using: 'css selector',
        value: '[data-testid="status-title"]',
      });
      const id = el[ELEMENT_KEY];
      if (typeof id !== 'string') throw new Error(`no element id in ${JSON.stringify(el)}`);
      text = String(await wd('GET', `/session/${sessionId}/element/${id}/text`)).trim();
      if (text.startsWith('Connected') || text.startsWith('Cannot reach')) break;
    } catch (e) {
      // The page may still be loading.
      lastError = e instanceof Error ? e.message : String(e);
    }
    await sleep(500);
  }
  if (lastError && !text) console.log(`e2e: last WebDriver error: ${lastError}`);
  const title = await wd('GET', `/session/${sessionId}/title`);
  console.log(`e2e: window title "${title}", status "${text}"`);
  if (process.env.E2E_SCREENSHOT) {
    const png = await wd('GET', `/session/${sessionId}/screenshot`);
    writeFileSync(process.env.E2E_SCREENSHOT, Buffer.from(png, 'base64'));
    console.log(`e2e: screenshot written to ${process.env.E2E_SCREENSHOT}`);
  }
  if (title !== 'Rohimaya') throw new Error(`expected the window title "Rohimaya", got "${title}"`);
  if (text !== 'Connected to the local backend') {
    throw new Error(`expected "Connected to the local backend", got "${text}"`);
  }
  passed = true;
} catch (e) {
  console.error(`e2e: ${e instanceof Error ? e.message : String(e)}`);
} finally {
  if (sessionId) {
    await wd('DELETE', `/session/${sessionId}`).catch(() => {});
  }
  if (!driverExited) driver.kill('SIGTERM');
  await sleep(500);
  rmSync(dataDir, { recursive: true, force: true });
}

if (!passed) fail('the app did not show that it is connected');
console.log('e2e: 1 passed, 0 failed');
process.exit(0);
