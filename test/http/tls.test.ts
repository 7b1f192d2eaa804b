import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import tls from 'node:tls'
import { Agent, request } from 'undici'
import { startMockUpstream, upstreamEnv } from '../fakes/upstreams.ts'
import { orgWithKeys, startApp, type TestApp } from '../helpers/app.ts'

/**
 * CRYPTO-1 (security-tests T110/T111): when Tollgate terminates TLS itself, TLS 1.2 and 1.3
 * work and TLS 1.0/1.1 are refused — by the server, proven with a control server that accepts
 * the very same client settings; HSTS on every HTTPS response, and on plain HTTP only when a
 * TLS proxy is declared through TOLLGATE_PUBLIC_URL.
 */

function throwawayCert(t: TestContext): { dir: string; certPath: string; keyPath: string; cert: Buffer; key: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-tls-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const certPath = join(dir, 'cert.pem')
  const keyPath = join(dir, 'key.pem')
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '1',
    '-keyout', keyPath, '-out', certPath, '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { stdio: 'pipe' })
  return { dir, certPath, keyPath, cert: readFileSync(certPath), key: readFileSync(keyPath) }
}

/** The client settings of a legacy client: offers only TLS 1.0–1.1, with every cipher allowed. */
const LEGACY = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' } as const

type Handshake = { ok: true; protocol: string | null; cipher: string } | { ok: false; error: string }

function handshake(port: number, opts: tls.ConnectionOptions): Promise<Handshake> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...opts })
    const timer = setTimeout(() => {
      s.destroy()
      resolve({ ok: false, error: 'timeout' })
    }, 5000)
    s.once('secureConnect', () => {
      clearTimeout(timer)
      const r: Handshake = { ok: true, protocol: s.getProtocol(), cipher: s.getCipher().name }
      s.end()
      resolve(r)
    })
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      s.destroy()
      resolve({ ok: false, error: e.code ?? e.message })
    })
  })
}

async function tlsApp(t: TestContext, env: Record<string, string> = {}) {
  const c = throwawayCert(t)
  const tg = await startApp(t, { env: { TOLLGATE_TLS_CERT: c.certPath, TOLLGATE_TLS_KEY: c.keyPath, ...env } })
  if (!tg) return undefined
  assert.match(tg.url, /^https:\/\/127\.0\.0\.1:\d+$/)
  return { tg, ...c, port: Number(new URL(tg.url).port) }
}

test('CRYPTO-1: TLS 1.2 and 1.3 handshakes succeed; TLS 1.0 and 1.1 are refused by the server (positive control: the same client reaches a TLS 1.0-capable control server)', async (t) => {
  // As if started with NODE_OPTIONS=--tls-min-v1.0 (T110): the flag must not lower Tollgate's minimum.
  const defaultMin = tls.DEFAULT_MIN_VERSION
  tls.DEFAULT_MIN_VERSION = 'TLSv1'
  t.after(() => {
    tls.DEFAULT_MIN_VERSION = defaultMin
  })
  const w = await tlsApp(t)
  if (!w) return

  // Modern clients, verifying the certificate.
  const v12 = await handshake(w.port, { ca: w.cert, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' })
  assert.deepEqual(v12.ok && v12.protocol, 'TLSv1.2', JSON.stringify(v12))
  const v13 = await handshake(w.port, { ca: w.cert, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' })
  assert.deepEqual(v13.ok && v13.protocol, 'TLSv1.3', JSON.stringify(v13))
  // A client that allows everything gets TLS 1.3 (preferred).
  const any = await handshake(w.port, { ca: w.cert, minVersion: 'TLSv1', maxVersion: 'TLSv1.3', ciphers: 'DEFAULT@SECLEVEL=0' })
  assert.deepEqual(any.ok && any.protocol, 'TLSv1.3', JSON.stringify(any))

  // Positive control: a server that does allow TLS 1.0+, on this very OpenSSL build.
  const control = tls.createServer({ cert: w.cert, key: w.key, minVersion: 'TLSv1', maxVersion: 'TLSv1.3', ciphers: 'DEFAULT@SECLEVEL=0' }, (s) => s.end())
  await new Promise<void>((r) => control.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => control.close(() => r())))
  const controlPort = (control.address() as AddressInfo).port
  for (const version of ['TLSv1', 'TLSv1.1'] as const) {
    const settings = { ...LEGACY, minVersion: version, maxVersion: version, rejectUnauthorized: false }
    const ctl = await handshake(controlPort, settings)
    // If this fails the test proves nothing (the refusal below could be the client's): fail as invalid.
    assert.ok(ctl.ok && ctl.protocol === version, `INVALID TEST: the control server could not negotiate ${version} with these client settings on this OpenSSL build (${JSON.stringify(ctl)}), so a refusal by Tollgate would prove nothing`)

    const refused = await handshake(w.port, settings)
    assert.equal(refused.ok, false, `Tollgate accepted ${version}: ${JSON.stringify(refused)}`)
    // Refused for its protocol version (a protocol_version alert from the server).
    assert.match(refused.ok ? '' : refused.error, /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL/, JSON.stringify(refused))
  }
  // The range 1.0–1.1 together is refused as well, and so is a 1.1-capped client that verifies properly.
  const ctlRange = await handshake(controlPort, { ...LEGACY, rejectUnauthorized: false })
  assert.ok(ctlRange.ok, `INVALID TEST: control refused the 1.0–1.1 client: ${JSON.stringify(ctlRange)}`)
  assert.equal((await handshake(w.port, { ...LEGACY, rejectUnauthorized: false })).ok, false)
  assert.equal((await handshake(w.port, { ...LEGACY, ca: w.cert })).ok, false)
})

async function get(url: string, dispatcher: Agent | undefined, init: { method?: 'GET' | 'POST'; body?: string; headers?: Record<string, string> } = {}) {
  const res = await request(url, { method: init.method ?? 'GET', ...(dispatcher ? { dispatcher } : {}), ...(init.body !== undefined ? { body: init.body } : {}), ...(init.headers ? { headers: init.headers } : {}) })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, text }
}

/** One request to every kind of response: ops, AI success (JSON and stream), AI errors, 404. */
async function everyKindOfResponse(tg: TestApp, dispatcher: Agent | undefined, key: string) {
  const json = { 'content-type': 'application/json', authorization: `Bearer ${key}` }
  return [
    ['/healthz', await get(`${tg.url}/healthz`, dispatcher)],
    ['/readyz', await get(`${tg.url}/readyz`, dispatcher)],
    ['/metrics', await get(`${tg.url}/metrics`, dispatcher)],
    ['/v1/models', await get(`${tg.url}/v1/models`, dispatcher, { headers: { authorization: `Bearer ${key}` } })],
    ['/v1/models 401', await get(`${tg.url}/v1/models`, dispatcher)],
    ['404', await get(`${tg.url}/no/such/thing`, dispatcher)],
    ['AI 200', await get(`${tg.url}/v1/intercept`, dispatcher, { method: 'POST', headers: json, body: JSON.stringify({ model: 'local-echo', prompt: 'hi' }) })],
    ['AI 200 stream', await get(`${tg.url}/v1/messages`, dispatcher, { method: 'POST', headers: json, body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 5, stream: true, messages: [{ role: 'user', content: 'hi' }] }) })],
    ['AI 502', await get(`${tg.url}/v1/chat/completions`, dispatcher, { method: 'POST', headers: json, body: JSON.stringify({ model: 'gpt-4o-fail-500', messages: [{ role: 'user', content: 'hi' }] }) })],
    ['AI 400', await get(`${tg.url}/v1/messages`, dispatcher, { method: 'POST', headers: json, body: '{"bad' })],
    ['AI 401', await get(`${tg.url}/v1/messages`, dispatcher, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })],
    ['AI 415', await get(`${tg.url}/v1/intercept`, dispatcher, { method: 'POST', headers: { ...json, 'content-type': 'text/plain' }, body: 'hi' })],
  ] as const
}

test('CRYPTO-1: HSTS (max-age ≥ 1 year) on every HTTPS response — ops, AI JSON, AI stream, errors, 404 — with nosniff, no-store and a charset', async (t) => {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const w = await tlsApp(t, upstreamEnv(mock))
  if (!w) return
  const { production } = await orgWithKeys(w.tg.deps)
  const agent = new Agent({ connect: { ca: w.cert, servername: 'localhost' } })
  t.after(() => agent.close())
  const statuses = new Set<number>()
  for (const [name, res] of await everyKindOfResponse(w.tg, agent, production)) {
    statuses.add(res.status)
    const hsts = String(res.headers['strict-transport-security'] ?? '')
    const maxAge = /(?:^|;\s*)max-age=(\d+)/i.exec(hsts)?.[1]
    assert.ok(maxAge !== undefined && Number(maxAge) >= 31536000, `${name} (${res.status}): HSTS with max-age ≥ 31536000, got "${hsts}"`)
    // T111: the other headers every API response carries.
    assert.equal(res.headers['x-content-type-options'], 'nosniff', name)
    assert.equal(res.headers['cache-control'], 'no-store', name)
    assert.match(String(res.headers['content-type'] ?? ''), /charset=utf-8/i, `${name}: content-type with a charset`)
    assert.equal(res.headers['x-powered-by'], undefined)
  }
  assert.deepEqual([...statuses].sort(), [200, 400, 401, 404, 415, 502])
})

test('CRYPTO-1: no HSTS over plain HTTP, unless TOLLGATE_PUBLIC_URL says a TLS proxy is in front (https://)', async (t) => {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  for (const [publicUrl, expectHsts] of [[undefined, false], ['http://gateway.internal:8787', false], ['https://gateway.example.com', true]] as const) {
    const tg = await startApp(t, { env: { ...upstreamEnv(mock), ...(publicUrl ? { TOLLGATE_PUBLIC_URL: publicUrl } : {}) } })
    if (!tg) return
    assert.match(tg.url, /^http:\/\//)
    const { production } = await orgWithKeys(tg.deps)
    for (const [name, res] of await everyKindOfResponse(tg, undefined, production)) {
      const hsts = res.headers['strict-transport-security']
      if (expectHsts) assert.match(String(hsts ?? ''), /max-age=(3153[6-9]\d{3}|31[6-9]\d{5}|3[2-9]\d{6}|[4-9]\d{7}|\d{9,})/, `${name} behind ${publicUrl}: HSTS expected`)
      else assert.equal(hsts, undefined, `${name} with TOLLGATE_PUBLIC_URL=${publicUrl ?? '(unset)'}: no HSTS over plain HTTP`)
      // T110: the plain API port never redirects to HTTPS.
      assert.ok(res.status < 300 || res.status >= 400, `${name}: no redirect`)
    }
    await tg.close()
  }
})
