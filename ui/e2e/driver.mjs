// A small W3C WebDriver client for the end-to-end tests: starts tauri-driver, opens the
// app, finds elements by CSS or by visible text, clicks, types, runs scripts, takes
// screenshots, and waits with deadlines (polling, never fixed sleeps as
// synchronisation). Plain HTTP; no test framework.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** The W3C WebDriver key of an element reference. */
const ELEMENT_KEY = 'element-6066-11e4-a52e-4f735466cecf';

function driverPath() {
  if (process.env.TAURI_DRIVER) return process.env.TAURI_DRIVER;
  const cargoBin = join(homedir(), '.cargo', 'bin', 'tauri-driver');
  return existsSync(cargoBin) ? cargoBin : 'tauri-driver';
}

export class Driver {
  /**
   * @param {number} port
   * @param {Record<string, string>} env
   */
  constructor(port, env) {
    this.base = `http://127.0.0.1:${port}`;
    /** @type {string | null} */
    this.session = null;
    this.exited = false;
    // The native WebDriver on the next port, so two runs with different E2E_PORTs on
    // one machine do not meet (tauri-driver's default native port is fixed).
    this.process = spawn(driverPath(), ['--port', String(port), '--native-port', String(port + 1)], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, ...env },
    });
    this.process.on('exit', () => {
      this.exited = true;
    });
  }

  /**
   * One WebDriver call; returns `value` or throws with the driver's error.
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @returns {Promise<any>}
   */
  async call(method, path, body) {
    const res = await fetch(`${this.base}${path}`, {
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

  async ready() {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (this.exited) throw new Error('tauri-driver exited');
      try {
        if ((await fetch(`${this.base}/status`)).ok) return;
      } catch {
        // not listening yet
      }
      await sleep(250);
    }
    throw new Error(`tauri-driver did not listen on ${this.base} within 30 s`);
  }

  /** Starts the app. @param {string} app */
  async open(app) {
    const s = await this.call('POST', '/session', {
      capabilities: { alwaysMatch: { 'tauri:options': { application: app } } },
    });
    this.session = s.sessionId;
  }

  /** Quits the app. */
  async close() {
    if (this.session) await this.call('DELETE', `/session/${this.session}`).catch(() => {});
    this.session = null;
  }

  /** @param {string} path @param {unknown} [body] */
  s(path, body) {
    return this.call(body === undefined ? 'GET' : 'POST', `/session/${this.session}${path}`, body);
  }

  /**
   * Polls `probe` until it returns something other than undefined/false, or throws
   * after `ms` naming `what`.
   * @template T
   * @param {string} what
   * @param {() => Promise<T | undefined | false>} probe
   * @param {number} [ms]
   * @returns {Promise<T>}
   */
  async until(what, probe, ms = 60_000) {
    const deadline = Date.now() + ms;
    let last = '';
    while (Date.now() < deadline) {
      try {
        const v = await probe();
        if (v !== undefined && v !== false) return /** @type {T} */ (v);
      } catch (e) {
        last = e instanceof Error ? e.message : String(e);
      }
      await sleep(250);
    }
    throw new Error(`no ${what} within ${ms / 1000} s${last ? ` (last error: ${last})` : ''}`);
  }

  /** Element ids matching a CSS selector. @param {string} css @returns {Promise<string[]>} */
  async all(css) {
    const els = await this.s('/elements', { using: 'css selector', value: css });
    return els.map((/** @type {Record<string, string>} */ e) => e[ELEMENT_KEY]);
  }

  /**
   * The trimmed text content of every element matching `css`, in document order. Read
   * in the page (one call) rather than through WebDriver's "visible text", which
   * WebKitWebDriver reports as empty for rows inside a scrolled, absolutely positioned
   * list.
   * @param {string} css
   * @returns {Promise<string[]>}
   */
  async texts(css) {
    return this.s('/execute/sync', {
      script: 'return [...document.querySelectorAll(arguments[0])].map((e) => (e.textContent ?? "").trim());',
      args: [css],
    });
  }

  /** Element ids whose text is `text` (trimmed), among `css`. */
  async withText(/** @type {string} */ css, /** @type {string} */ text) {
    const [ids, texts] = await Promise.all([this.all(css), this.texts(css)]);
    return ids.filter((_, i) => texts[i] === text);
  }

  /** Waits for a button with this text and clicks it. */
  async clickButton(/** @type {string} */ text, ms = 30_000) {
    const id = await this.until(`a "${text}" button`, async () => (await this.withText('button', text))[0], ms);
    await this.s(`/element/${id}/click`, {});
  }

  /** Waits for an element matching `css` and clicks it (as a user would). */
  async click(/** @type {string} */ css, ms = 30_000) {
    const id = await this.until(`an element ${css}`, async () => (await this.all(css))[0], ms);
    await this.s(`/element/${id}/click`, {});
  }

  /**
   * Runs `script` (a function body; `arguments` as in WebDriver) in the page and
   * returns its value.
   * @param {string} script
   * @param {unknown[]} [args]
   * @returns {Promise<any>}
   */
  async run(script, args = []) {
    return this.s('/execute/sync', { script, args });
  }

  /** Types `value` into the first element matching `css`. */
  async type(/** @type {string} */ css, /** @type {string} */ value) {
    const id = await this.until(`an input ${css}`, async () => (await this.all(css))[0]);
    await this.s(`/element/${id}/clear`, {});
    await this.s(`/element/${id}/value`, { text: value });
  }

  /** Waits until some element matching `css` shows `text` (exactly, or matching a RegExp). */
  async waitText(/** @type {string} */ css, /** @type {string | RegExp} */ text, ms = 60_000) {
    return this.until(`"${text}" in ${css}`, async () =>
      (await this.texts(css)).find((t) => (typeof text === 'string' ? t === text : text.test(t))),
    ms);
  }

  /**
   * Calls a Tauri command from the page, as the UI does.
   * @param {string} cmd
   * @param {Record<string, unknown>} args
   */
  async invoke(cmd, args) {
    const result = await this.s('/execute/async', {
      script:
        'const done = arguments[arguments.length - 1];' +
        'window.__TAURI_INTERNALS__.invoke(arguments[0], arguments[1])' +
        '.then((v) => done({ ok: v }), (e) => done({ err: e }));',
      args: [cmd, args],
    });
    if (result && 'err' in result) throw new Error(`${cmd}: ${JSON.stringify(result.err)}`);
    return result?.ok;
  }

  /** Saves a screenshot as `dir/name.png`. */
  async screenshot(/** @type {string} */ dir, /** @type {string} */ name) {
    mkdirSync(dir, { recursive: true });
    const png = await this.s('/screenshot');
    writeFileSync(join(dir, `${name}.png`), Buffer.from(png, 'base64'));
  }

  async stop() {
    await this.close();
    if (!this.exited) this.process.kill('SIGTERM');
    await sleep(500);
  }
}
