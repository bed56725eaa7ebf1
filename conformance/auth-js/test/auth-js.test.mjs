// The official @supabase/auth-js client against `rohimaya devstack`: our evidence that
// the devstack's auth emulation is what official clients expect. It spawns the CLI on a
// temporary data dir, reads the one JSON line it prints, drives sign-up, password sign-in,
// refresh, get-user, email OTP, PKCE OAuth and sign-out through auth-js, and finally
// checks that the devstack exits 0 on SIGTERM. No test framework beyond `node --test`.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { AuthClient } from '@supabase/auth-js'

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const bin = process.env.ROHIMAYA_BIN ?? path.resolve(packageDir, '../../target/debug/rohimaya')
const PASSWORD = 'correct horse battery'

let devstack // the child process
let exited // resolves to { code, signal } once it exits
let info // the JSON line: { supabase_url, anon_key, api_url, ... }
let dataDir
let stderr = ''

before(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'rohimaya-auth-js-'))
  devstack = spawn(bin, ['devstack', '--data', dataDir], { stdio: ['ignore', 'pipe', 'pipe'] })
  devstack.stderr.on('data', (chunk) => {
    stderr += chunk
  })
  exited = new Promise((resolve) => {
    devstack.on('exit', (code, signal) => resolve({ code, signal }))
  })
  const spawnError = new Promise((_, reject) => devstack.on('error', reject))
  const firstLine = new Promise((resolve, reject) => {
    const lines = createInterface({ input: devstack.stdout })
    lines.once('line', resolve)
    lines.once('close', () => reject(new Error(`devstack printed nothing; stderr:\n${stderr}`)))
  })
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`devstack not ready in 60 s; stderr:\n${stderr}`)), 60_000).unref()
  )
  const line = await Promise.race([firstLine, spawnError, timeout])
  info = JSON.parse(line)
  for (const key of ['supabase_url', 'anon_key', 'api_url']) {
    assert.equal(typeof info[key], 'string', `${key} in ${line}`)
  }
})

after(() => {
  if (devstack && devstack.exitCode === null && devstack.signalCode === null) {
    devstack.kill('SIGKILL')
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true })
})

/** A storage that lives as long as the client (auth-js keeps the PKCE verifier in it). */
function memoryStorage() {
  const items = new Map()
  return {
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => {
      items.set(key, value)
    },
    removeItem: (key) => {
      items.delete(key)
    },
  }
}

function client(options = {}) {
  return new AuthClient({
    url: `${info.supabase_url}/auth/v1`,
    headers: { apikey: info.anon_key, Authorization: `Bearer ${info.anon_key}` },
    storage: memoryStorage(),
    persistSession: true,
    autoRefreshToken: false,
    detectSessionInUrl: false,
    ...options,
  })
}

let counter = 0
function uniqueEmail(label) {
  counter += 1
  return `${label}-${process.pid}-${counter}@example.com`
}

async function mailbox(email) {
  const res = await fetch(`${info.supabase_url}/devstack/mailbox/${encodeURIComponent(email)}`)
  assert.equal(res.status, 200)
  return res.json()
}

test('signUp answers a session and a confirmed user', async () => {
  const auth = client()
  const email = uniqueEmail('signup')
  const { data, error } = await auth.signUp({
    email,
    password: PASSWORD,
    options: { data: { pen_name: 'A. Author' } },
  })
  assert.equal(error, null)
  assert.equal(data.user.email, email)
  assert.equal(data.user.user_metadata.pen_name, 'A. Author')
  assert.ok(data.user.email_confirmed_at)
  assert.deepEqual(data.user.app_metadata.providers, ['email'])
  assert.ok(data.session.access_token)
  assert.ok(data.session.refresh_token)
  assert.equal(data.session.token_type, 'bearer')
  assert.ok(data.session.expires_at > Date.now() / 1000)

  const again = await auth.signUp({ email, password: PASSWORD })
  assert.equal(again.error.code, 'user_already_exists')
  assert.equal(again.error.status, 422)

  const weak = await auth.signUp({ email: uniqueEmail('weak'), password: '123' })
  assert.equal(weak.error.code, 'weak_password')
  assert.equal(weak.error.name, 'AuthWeakPasswordError')
  assert.deepEqual(weak.error.reasons, ['length'])
})

test('signInWithPassword, refreshSession and getUser', async () => {
  const email = uniqueEmail('password')
  assert.equal((await client().signUp({ email, password: PASSWORD })).error, null)

  const auth = client()
  const signedIn = await auth.signInWithPassword({ email, password: PASSWORD })
  assert.equal(signedIn.error, null)
  const first = signedIn.data.session

  const refreshed = await auth.refreshSession()
  assert.equal(refreshed.error, null)
  assert.notEqual(refreshed.data.session.refresh_token, first.refresh_token)
  assert.equal(refreshed.data.user.id, first.user.id)

  const user = await auth.getUser()
  assert.equal(user.error, null)
  assert.equal(user.data.user.id, first.user.id)
  assert.equal(user.data.user.email, email)

  const wrong = await client().signInWithPassword({ email, password: 'not the password' })
  assert.equal(wrong.data.session, null)
  assert.equal(wrong.error.code, 'invalid_credentials')
  assert.equal(wrong.error.status, 400)
  assert.equal(wrong.error.message, 'Invalid login credentials')
})

test('signInWithOtp and verifyOtp with the code from the dev mailbox', async () => {
  const auth = client()
  const email = uniqueEmail('otp')
  const sent = await auth.signInWithOtp({ email, options: { shouldCreateUser: true } })
  assert.equal(sent.error, null)

  const [message] = await mailbox(email)
  assert.match(message.code, /^\d{6}$/)

  const wrong = await auth.verifyOtp({
    email,
    token: message.code === '000000' ? '111111' : '000000',
    type: 'email',
  })
  assert.equal(wrong.error.code, 'otp_expired')

  const verified = await auth.verifyOtp({ email, token: message.code, type: 'email' })
  assert.equal(verified.error, null)
  assert.equal(verified.data.user.email, email)
  assert.ok(verified.data.session.access_token)
  assert.equal((await auth.getUser()).data.user.email, email)

  const reused = await client().verifyOtp({ email, token: message.code, type: 'email' })
  assert.equal(reused.error.code, 'otp_expired')
})

test('PKCE OAuth through the consent page and exchangeCodeForSession', async () => {
  const auth = client({ flowType: 'pkce' })
  const redirectTo = 'http://127.0.0.1:53682/callback'
  const started = await auth.signInWithOAuth({
    provider: 'google',
    options: { redirectTo, skipBrowserRedirect: true },
  })
  assert.equal(started.error, null)
  assert.match(started.data.url, /code_challenge_method=s256/)

  // The "browser": follow /authorize to the consent page and approve it.
  const authorize = await fetch(started.data.url, { redirect: 'manual' })
  assert.equal(authorize.status, 302)
  const consentUrl = new URL(authorize.headers.get('location'))
  const page = await fetch(consentUrl)
  assert.equal(page.status, 200)
  assert.match(await page.text(), /Sign in to Rohimaya \(local\) with Google/)

  const email = uniqueEmail('oauth')
  const approved = await fetch(new URL('/devstack/oauth/consent', info.supabase_url), {
    method: 'POST',
    redirect: 'manual',
    body: new URLSearchParams({
      state: consentUrl.searchParams.get('state'),
      email,
      decision: 'approve',
    }),
  })
  assert.equal(approved.status, 303)
  const back = new URL(approved.headers.get('location'))
  assert.equal(`${back.origin}${back.pathname}`, redirectTo)
  const code = back.searchParams.get('code')
  assert.ok(code)

  const exchanged = await auth.exchangeCodeForSession(code)
  assert.equal(exchanged.error, null)
  assert.equal(exchanged.data.user.email, email)
  assert.deepEqual(exchanged.data.user.app_metadata.providers, ['google'])
  assert.equal((await auth.getUser()).data.user.email, email)

  // The code is single use; auth-js has also spent its verifier.
  const again = await client({ flowType: 'pkce' }).exchangeCodeForSession(code)
  assert.ok(again.error)
})

test('signOut ends the session everywhere', async () => {
  const email = uniqueEmail('signout')
  const auth = client()
  const { data } = await auth.signUp({ email, password: PASSWORD })
  const refreshToken = data.session.refresh_token

  const out = await auth.signOut()
  assert.equal(out.error, null)
  assert.equal((await auth.getSession()).data.session, null)

  const stale = await client().refreshSession({ refresh_token: refreshToken })
  assert.equal(stale.error.code, 'refresh_token_not_found')
})

test('the devstack exits 0 on SIGTERM', async () => {
  assert.ok(devstack.kill('SIGTERM'))
  const { code, signal } = await exited
  assert.equal(signal, null, `killed by ${signal}; stderr:\n${stderr}`)
  assert.equal(code, 0, `stderr:\n${stderr}`)
})
