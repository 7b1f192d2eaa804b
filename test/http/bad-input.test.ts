import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { checksum62, randomBase62 } from '../../src/core/crypto.ts'
import { ERRORS, type ErrorCode } from '../../src/core/errors.ts'
import { mintKey } from '../../src/keys/key-format.ts'
import { orgWithKeys, startApp, type TestApp } from '../helpers/app.ts'

/**
 * LIMIT-3 / GW-1: bad input on every AI endpoint gets a clear 4xx in that endpoint's own error
 * shape, echoes nothing it was sent, leaks no internals, and changes nothing — except exactly
 * one decision record when the key was valid.
 */

type Format = 'anthropic' | 'openai' | 'native'

interface Endpoint {
  readonly format: Format
  readonly path: string
  /** A valid request body (answered by the local provider for sandbox keys). */
  valid(prompt: string): Record<string, unknown>
}

const ENDPOINTS: readonly Endpoint[] = [
  { format: 'anthropic', path: '/v1/messages', valid: (p) => ({ model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: p }] }) },
  { format: 'openai', path: '/v1/chat/completions', valid: (p) => ({ model: 'gpt-4o', messages: [{ role: 'user', content: p }] }) },
  { format: 'native', path: '/v1/intercept', valid: (p) => ({ model: 'local-echo', prompt: p }) },
]

const BODY_LIMIT = 4096

const marker = () => `MARK${randomBytes(8).toString('hex')}`

interface Res {
  readonly status: number
  readonly headers: Headers
  readonly text: string
  readonly json: any
}

async function send(base: string, path: string, init: { body?: string | ReadableStream<Uint8Array>; headers?: Record<string, string> }): Promise<Res> {
  const res = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...init.headers },
    ...(init.body !== undefined ? { body: init.body } : {}),
    ...(init.body instanceof ReadableStream ? { duplex: 'half' } : {}),
  } as RequestInit)
  const text = await res.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, text, json }
}

/** The error in the endpoint's own shape, carrying exactly the table's code and message. */
function assertErrorShape(ep: Endpoint, res: Res, code: ErrorCode, param?: string): void {
  const { status, message } = ERRORS[code]
  assert.equal(res.status, status, `${ep.format}: expected ${status} ${code}, got ${res.status} ${res.text}`)
  assert.match(res.headers.get('content-type') ?? '', /^application\/json; charset=utf-8$/)
  const b = res.json
  assert.ok(b && typeof b === 'object', `${ep.format}: the error body is JSON`)
  if (ep.format === 'anthropic') {
    assert.deepEqual(Object.keys(b).sort(), ['error', 'request_id', 'type'])
    assert.equal(b.type, 'error')
    assert.deepEqual(Object.keys(b.error).sort(), ['message', 'type'])
    assert.equal(typeof b.error.type, 'string')
    assert.equal(b.error.message, param ? `${message} (${param})` : message)
    assert.equal(b.request_id, res.headers.get('x-request-id'))
  } else if (ep.format === 'openai') {
    assert.deepEqual(Object.keys(b), ['error'])
    assert.deepEqual(Object.keys(b.error).sort(), ['code', 'message', 'param', 'type'])
    assert.equal(b.error.code, code)
    assert.equal(b.error.message, message)
    assert.equal(b.error.param, param ?? null)
    assert.equal(typeof b.error.type, 'string')
  } else {
    assert.deepEqual(Object.keys(b), ['error'])
    assert.deepEqual(Object.keys(b.error).sort(), param ? ['code', 'message', 'param', 'request_id'] : ['code', 'message', 'request_id'])
    assert.equal(b.error.code, code)
    assert.equal(b.error.message, message)
    if (param) assert.equal(b.error.param, param)
    assert.equal(b.error.request_id, res.headers.get('x-request-id'))
  }
  assert.match(res.headers.get('x-request-id') ?? '', /^req_[0-9A-Za-z]+$/)
}

/** Nothing from the input comes back, and no internals leak. */
function assertNoEcho(res: Res, ...markers: string[]): void {
  const headers = [...res.headers.entries()].map(([k, v]) => `${k}: ${v}`).join('\n')
  for (const m of markers) {
    assert.ok(!res.text.includes(m), `the response body echoes the input (${m})`)
    assert.ok(!headers.includes(m), `a response header echoes the input (${m})`)
  }
  assert.doesNotMatch(res.text, /node_modules|\bat [\w.<>]+ \(|\.ts:\d+|\.js:\d+/, 'no stack trace in the body')
  assert.doesNotMatch(res.text, /\b(select|insert|update|delete)\b.+\b(from|into|set)\b|sqlite|postgres|SQLITE_/i, 'no SQL text in the body')
}

const TABLES = ['org', 'org_key', 'api_key', 'decision', 'audit_event'] as const

async function tableCounts(tg: TestApp): Promise<Record<(typeof TABLES)[number], number>> {
  await tg.deps.decisions.drain()
  const out = { org: 0, org_key: 0, api_key: 0, decision: 0, audit_event: 0 }
  for (const t of TABLES) {
    const r = await tg.deps.db.db.selectFrom(t).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
    out[t] = Number(r.n)
  }
  return out
}

/**
 * Runs `fn`, then checks that it changed nothing except (when `recorded` is given) exactly one
 * new decision record: outcome `rejected` with that error code, on that endpoint and key.
 */
async function changes(tg: TestApp, recorded: { code: ErrorCode; format: Format; keyId: string } | undefined, fn: () => Promise<void>): Promise<void> {
  const before = await tableCounts(tg)
  const newest = await tg.deps.db.db.selectFrom('decision').select('id').execute()
  const seen = new Set(newest.map((r) => r.id))
  await fn()
  const after = await tableCounts(tg)
  assert.deepEqual({ ...after, decision: 0 }, { ...before, decision: 0 }, 'no other row was written')
  assert.equal(after.decision - before.decision, recorded ? 1 : 0, recorded ? 'exactly one decision record' : 'no decision record without a valid key')
  if (!recorded) return
  const rows = (await tg.deps.db.db.selectFrom('decision').selectAll().execute()).filter((r) => !seen.has(r.id))
  assert.equal(rows.length, 1)
  const row = rows[0]!
  assert.equal(row.outcome, 'rejected')
  assert.equal(row.error_code, recorded.code)
  assert.equal(row.status, ERRORS[recorded.code].status)
  assert.equal(row.endpoint, recorded.format)
  assert.equal(row.key_id, recorded.keyId)
}

async function world(t: import('node:test').TestContext, env: Record<string, string> = {}) {
  const tg = await startApp(t, { env: { TOLLGATE_BODY_LIMIT_BYTES: String(BODY_LIMIT), ...env } })
  if (!tg) return undefined
  const keys = await orgWithKeys(tg.deps)
  return { tg, ...keys, auth: { authorization: `Bearer ${keys.sandbox}` } }
}

test('LIMIT-3 GW-1: malformed JSON → 400 invalid_json in each API\'s own shape, nothing echoed, one decision record', async (t) => {
  const w = await world(t)
  if (!w) return
  for (const ep of ENDPOINTS) {
    const cases = (m: string) => [`{"model": "${m}`, `{"prompt": ${m}}`, `{"model":"x","prompt":"${m}",}`, `\u0000${m}`]
    for (const make of [0, 1, 2, 3]) {
      const m = marker()
      await changes(w.tg, { code: 'invalid_json', format: ep.format, keyId: w.sandboxId }, async () => {
        const res = await send(w.tg.url, ep.path, { body: cases(m)[make]!, headers: w.auth })
        assertErrorShape(ep, res, 'invalid_json')
        assertNoEcho(res, m)
      })
    }
    // An empty body with a JSON content type is malformed JSON too.
    await changes(w.tg, { code: 'invalid_json', format: ep.format, keyId: w.sandboxId }, async () => {
      assertErrorShape(ep, await send(w.tg.url, ep.path, { body: '', headers: w.auth }), 'invalid_json')
    })
  }
})

test('LIMIT-3 GW-1: a body that is not JSON → 415 in each API\'s own shape, nothing echoed, one decision record', async (t) => {
  const w = await world(t)
  if (!w) return
  for (const ep of ENDPOINTS) {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/octet-stream']) {
      const m = marker()
      await changes(w.tg, { code: 'unsupported_media_type', format: ep.format, keyId: w.sandboxId }, async () => {
        const res = await send(w.tg.url, ep.path, { body: JSON.stringify(ep.valid(m)), headers: { ...w.auth, 'content-type': type } })
        assertErrorShape(ep, res, 'unsupported_media_type')
        assertNoEcho(res, m)
      })
    }
  }
})

test('LIMIT-3 GW-1: a body over TOLLGATE_BODY_LIMIT_BYTES → 413 in each API\'s own shape (with and without content-length), one decision record', async (t) => {
  const w = await world(t)
  if (!w) return
  for (const ep of ENDPOINTS) {
    const m = marker()
    const big = JSON.stringify(ep.valid(`${m} ${'x'.repeat(BODY_LIMIT * 2)}`))
    await changes(w.tg, { code: 'payload_too_large', format: ep.format, keyId: w.sandboxId }, async () => {
      const res = await send(w.tg.url, ep.path, { body: big, headers: w.auth })
      assertErrorShape(ep, res, 'payload_too_large')
      assertNoEcho(res, m)
    })
    // Chunked: the size is only known while reading.
    await changes(w.tg, { code: 'payload_too_large', format: ep.format, keyId: w.sandboxId }, async () => {
      const bytes = new TextEncoder().encode(big)
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < bytes.length; i += 1000) c.enqueue(bytes.subarray(i, i + 1000))
          c.close()
        },
      })
      const res = await send(w.tg.url, ep.path, { body: stream, headers: w.auth })
      assertErrorShape(ep, res, 'payload_too_large')
      assertNoEcho(res, m)
    })
    // Just under the limit still works (the limit is the setting, not something smaller).
    const fits = JSON.stringify(ep.valid('y'.repeat(BODY_LIMIT - 300)))
    assert.ok(Buffer.byteLength(fits) < BODY_LIMIT)
    const ok = await send(w.tg.url, ep.path, { body: fits, headers: w.auth })
    assert.equal(ok.status, 200, ok.text)
  }
})

test('LIMIT-3 GW-1: an unknown model → 404 model_not_found; the model name is not echoed; one decision record', async (t) => {
  const w = await world(t)
  if (!w) return
  for (const ep of ENDPOINTS) {
    const m = marker()
    await changes(w.tg, { code: 'model_not_found', format: ep.format, keyId: w.sandboxId }, async () => {
      const res = await send(w.tg.url, ep.path, { body: JSON.stringify({ ...ep.valid('hello'), model: `nosuch-${m}` }), headers: w.auth })
      assertErrorShape(ep, res, 'model_not_found')
      assertNoEcho(res, m)
    })
    const rows = await w.tg.deps.db.db.selectFrom('decision').select(['model', 'prompt_fingerprint']).where('error_code', '=', 'model_not_found').execute()
    for (const r of rows) assert.ok(r.model === null || !r.model.includes('MARK'), 'the raw model string is never stored')
  }
})

test('LIMIT-3 GW-1: invalid fields → 400 with the field\'s path as param, nothing echoed, one decision record', async (t) => {
  const w = await world(t)
  if (!w) return
  const PNG_MAGIC_BAD = Buffer.from('GIF89a-not-a-png-at-all').toString('base64')
  const cases: Record<Format, { body: (m: string) => Record<string, unknown>; code: ErrorCode; param: string }[]> = {
    anthropic: [
      { body: (m) => ({ model: 'claude-sonnet-4-5', max_tokens: m, messages: [{ role: 'user', content: 'hi' }] }), code: 'invalid_request', param: 'max_tokens' },
      { body: (m) => ({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: m }] }), code: 'invalid_request', param: 'max_tokens' },
      { body: (m) => ({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: m, content: 'hi' }] }), code: 'invalid_request', param: 'messages[0].role' },
      { body: (m) => ({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user', content: 'a' }, { role: 'user', content: [{ type: 'text', text: 7, note: m }] }] }), code: 'invalid_request', param: 'messages[1].content[0].text' },
      { body: (m) => ({ model: 'claude-sonnet-4-5', max_tokens: 8, temperature: 9, messages: [{ role: 'user', content: m }] }), code: 'invalid_request', param: 'temperature' },
      { body: (m) => ({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: [] , system: m.length }), code: 'invalid_request', param: 'system' },
      { body: (m) => ({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG_MAGIC_BAD } }, { type: 'text', text: m }] }] }), code: 'attachment_rejected', param: 'messages[0].content[0].source.data' },
      { body: (m) => ({ model: `has space ${m}`, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }), code: 'invalid_request', param: 'model' },
      { body: (m) => ({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: m }), code: 'invalid_request', param: 'messages' },
    ],
    openai: [
      { body: (m) => ({ model: 'gpt-4o', temperature: m, messages: [{ role: 'user', content: 'hi' }] }), code: 'invalid_request', param: 'temperature' },
      { body: (m) => ({ model: 'gpt-4o', messages: [{ role: m, content: 'hi' }] }), code: 'invalid_request', param: 'messages[0].role' },
      { body: (m) => ({ model: 'gpt-4o', messages: [{ role: 'user', content: [{ type: 'text', text: { m } }] }] }), code: 'invalid_request', param: 'messages[0].content[0].text' },
      { body: (m) => ({ model: 'gpt-4o', max_tokens: -1, messages: [{ role: 'user', content: m }] }), code: 'invalid_request', param: 'max_tokens' },
      { body: (m) => ({ model: 'gpt-4o', stream: 'yes', messages: [{ role: 'user', content: m }] }), code: 'invalid_request', param: 'stream' },
      { body: (m) => ({ model: 'gpt-4o', stop: [m, 'b', 'c', 'd', 'e'], messages: [{ role: 'user', content: 'hi' }] }), code: 'invalid_request', param: 'stop' },
      { body: (m) => ({ model: 'gpt-4o', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/tiff;base64,${Buffer.from(m).toString('base64')}` } }] }] }), code: 'attachment_rejected', param: 'messages[0].content[0].image_url.url' },
      { body: (m) => ({ model: 'gpt-4o', messages: { role: 'user', content: m } }), code: 'invalid_request', param: 'messages' },
    ],
    native: [
      { body: (m) => ({ model: 'local-echo', prompt: 'hi', [m]: 1 }), code: 'invalid_request', param: 'body' },
      { body: (m) => ({ model: 'local-echo', prompt: [m] }), code: 'invalid_request', param: 'prompt' },
      { body: (m) => ({ model: 'local-echo', prompt: m, max_tokens: 0 }), code: 'invalid_request', param: 'max_tokens' },
      { body: (m) => ({ model: 'local-echo', prompt: 'hi', attachments: [{ mime_type: `application/${m}`, data: 'aGk=' }] }), code: 'attachment_rejected', param: 'attachments[0].mime_type' },
      { body: (m) => ({ model: 'local-echo', prompt: 'hi', attachments: [{ mime_type: 'text/plain', data: `${m}!!` }] }), code: 'attachment_rejected', param: 'attachments[0].data' },
      { body: (m) => ({ model: 'local-echo', prompt: 'hi', attachments: [{ mime_type: 'text/plain', data: Buffer.from([0xff, 0xfe, 0xfd]).toString('base64'), filename: m }] }), code: 'attachment_rejected', param: 'attachments[0].data' },
      { body: (m) => ({ model: 'local-echo', prompt: m, attachments: Array.from({ length: 17 }, () => ({ mime_type: 'text/plain', data: 'aGk=' })) }), code: 'invalid_request', param: 'attachments' },
    ],
  }
  for (const ep of ENDPOINTS) {
    for (const c of cases[ep.format]) {
      const m = marker()
      await changes(w.tg, { code: c.code, format: ep.format, keyId: w.sandboxId }, async () => {
        const res = await send(w.tg.url, ep.path, { body: JSON.stringify(c.body(m)), headers: w.auth })
        assertErrorShape(ep, res, c.code, c.param)
        assertNoEcho(res, m)
      })
    }
    // The body itself must be an object.
    for (const body of ['[]', '"MARKjsonstring"', '42', 'null']) {
      await changes(w.tg, { code: 'invalid_request', format: ep.format, keyId: w.sandboxId }, async () => {
        const res = await send(w.tg.url, ep.path, { body, headers: w.auth })
        assertErrorShape(ep, res, 'invalid_request', 'body')
        assertNoEcho(res, 'MARKjsonstring')
      })
    }
  }
})

test('LIMIT-3 GW-1 KEY-1: missing, malformed, unknown-id, wrong-secret and revoked keys → identical 401s, nothing written', async (t) => {
  const w = await world(t)
  if (!w) return
  const revoked = await w.tg.deps.keys.create({ orgId: w.org.id, environment: 'sandbox', actor: { type: 'operator', id: null } })
  assert.ok(await w.tg.deps.keys.revoke({ id: revoked.info.id, actor: { type: 'operator', id: null } }))
  // The real key's id with another (well-formed, correctly checksummed) secret.
  const body = `tg_test_${w.sandboxId}_${randomBase62(24)}`
  const wrongSecret = body + checksum62(body)
  assert.notEqual(wrongSecret, w.sandbox)
  const m = marker()
  const presented: [string, Record<string, string>][] = [
    ['missing', {}],
    ['malformed bearer', { authorization: `Bearer ${m}` }],
    ['malformed scheme', { authorization: `Basic ${m}` }],
    ['malformed x-api-key', { 'x-api-key': `tg_test_${m}` }],
    ['bad checksum', { authorization: `Bearer ${w.sandbox.slice(0, -6)}${m.slice(0, 6)}` }],
    ['unknown id', { authorization: `Bearer ${mintKey('sandbox').key}` }],
    ['wrong secret', { authorization: `Bearer ${wrongSecret}` }],
    ['wrong secret (x-api-key)', { 'x-api-key': wrongSecret }],
    ['revoked', { authorization: `Bearer ${revoked.key}` }],
    ['two different keys', { authorization: `Bearer ${w.sandbox}`, 'x-api-key': w.production }],
    ['production prefix on a sandbox id', { authorization: `Bearer ${(() => { const b = w.sandbox.slice(0, -6).replace('tg_test_', 'tg_live_'); return b + checksum62(b) })()}` }],
  ]
  for (const ep of ENDPOINTS) {
    const bodies = new Map<string, string>()
    for (const [name, headers] of presented) {
      await changes(w.tg, undefined, async () => {
        const res = await send(w.tg.url, ep.path, { body: JSON.stringify(ep.valid(m)), headers })
        assertErrorShape(ep, res, 'invalid_api_key')
        assertNoEcho(res, m, wrongSecret, revoked.key, w.sandbox, w.production)
        const j = structuredClone(res.json)
        delete j.request_id
        if (j.error) delete j.error.request_id
        bodies.set(name, JSON.stringify(j))
        assert.equal(res.headers.get('www-authenticate'), null, `${name}: no hint in headers`)
      })
    }
    assert.equal(new Set(bodies.values()).size, 1, `${ep.format}: every key failure looks the same: ${[...bodies].join('\n')}`)
  }
  // The valid key really works (so the failures above are about the key).
  const ok = await send(w.tg.url, '/v1/intercept', { body: JSON.stringify({ model: 'local-echo', prompt: 'hi' }), headers: w.auth })
  assert.equal(ok.status, 200)
})

test('LIMIT-3 GW-1 KEY-2: a key of an environment this instance does not serve → 403 environment_not_served, one decision record', async (t) => {
  const w = await world(t, { TOLLGATE_ENVIRONMENTS: 'production' })
  if (!w) return
  for (const ep of ENDPOINTS) {
    const m = marker()
    await changes(w.tg, { code: 'environment_not_served', format: ep.format, keyId: w.sandboxId }, async () => {
      const res = await send(w.tg.url, ep.path, { body: JSON.stringify(ep.valid(m)), headers: w.auth })
      assertErrorShape(ep, res, 'environment_not_served')
      assertNoEcho(res, m, w.sandbox)
    })
    // Refused before the body is read: an invalid body gets the same 403.
    await changes(w.tg, { code: 'environment_not_served', format: ep.format, keyId: w.sandboxId }, async () => {
      const res = await send(w.tg.url, ep.path, { body: JSON.stringify({ junk: m }), headers: w.auth })
      assertErrorShape(ep, res, 'environment_not_served')
      assertNoEcho(res, m)
    })
    // The served environment works on the same instance.
    const ok = await send(w.tg.url, ep.path, { body: JSON.stringify({ ...ep.valid('hi'), model: 'local-echo' }), headers: { authorization: `Bearer ${w.production}` } })
    assert.equal(ok.status, 200, ok.text)
  }
})

test('LIMIT-3 GW-1: __proto__ and constructor keys are rejected or harmless; Object.prototype is untouched', async (t) => {
  const w = await world(t)
  if (!w) return
  const protoBefore = Object.getOwnPropertyNames(Object.prototype).sort()
  for (const ep of ENDPOINTS) {
    const valid = JSON.stringify(ep.valid('hi'))
    const inner = valid.slice(1, -1)
    const m = marker()
    const bodies = [
      `{"__proto__":{"polluted":"${m}"},${inner}}`,
      `{"constructor":{"prototype":{"polluted":"${m}"}},${inner}}`,
      `{${inner},"messages_extra":{"__proto__":{"polluted":"${m}"}}}`,
      ep.format === 'native'
        ? `{"model":"local-echo","prompt":"hi","attachments":[{"__proto__":{"polluted":"${m}"},"mime_type":"text/plain","data":"aGk="}]}`
        : valid.replace('"role":"user"', `"role":"user","__proto__":{"polluted":"${m}"}`),
    ]
    for (const body of bodies) {
      const before = await tableCounts(w.tg)
      const res = await send(w.tg.url, ep.path, { body, headers: w.auth })
      assert.ok(res.status === 400 || res.status === 200, `${ep.format}: rejected or harmless, got ${res.status}`)
      if (res.status === 400) {
        // Rejected: in the endpoint's own shape, as invalid JSON or an invalid request.
        const code = ep.format === 'anthropic'
          ? (res.json.error.message === ERRORS.invalid_json.message ? 'invalid_json' : 'invalid_request')
          : res.json.error.code
        assert.ok(code === 'invalid_json' || code === 'invalid_request', `${ep.format}: ${res.text}`)
        if (ep.format === 'anthropic' ? res.json.error.message === ERRORS[code as ErrorCode].message : !res.json.error.param) assertErrorShape(ep, res, code)
      }
      assertNoEcho(res, m)
      const after = await tableCounts(w.tg)
      assert.equal(after.decision - before.decision, 1, 'one decision record either way')
      assert.equal(({} as Record<string, unknown>)['polluted'], undefined)
      assert.equal((Object.prototype as Record<string, unknown>)['polluted'], undefined)
    }
  }
  assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), protoBefore, 'Object.prototype untouched')
})
