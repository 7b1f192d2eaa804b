import assert from 'node:assert/strict'
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { promptFingerprint } from '../../src/gateway/wire/text.ts'
import { nativeWire } from '../../src/gateway/wire/native.ts'
import type { LogFields } from '../../src/observe/log.ts'
import { startMockUpstream, upstreamEnv } from '../fakes/upstreams.ts'
import { orgWithKeys, startApp } from '../helpers/app.ts'
import { captureLog } from '../helpers/log.ts'

/**
 * TRANSIT-4 / TRANSIT-5: logs never carry prompt text or keys; access logs carry route patterns;
 * the prompt fingerprint is an HMAC under the org's key; every response carries Server-Timing
 * and a request id of Tollgate's own making.
 */

const marker = (tag: string) => `MARK${tag}${randomBytes(8).toString('hex')}`

async function call(url: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}) {
  const res = await fetch(url, { method: init.method ?? (init.body !== undefined ? 'POST' : 'GET'), headers: { ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers }, ...(init.body !== undefined ? { body: init.body } : {}) })
  return { status: res.status, headers: res.headers, text: await res.text() }
}

test('TRANSIT-4 KEY-1: positive control — a marker in an allowlisted log field is written, in any other field it is dropped', async () => {
  const log = captureLog('debug')
  const allowed = marker('allowed')
  const dropped = marker('dropped')
  log.logger.info({ reqId: allowed }, 'control')
  log.logger.info({ prompt: dropped, body: { text: dropped }, headers: { authorization: dropped } } as unknown as LogFields, 'control')
  log.logger.error({ code: 'x', messages: [dropped] } as unknown as LogFields, 'control')
  assert.ok(log.text().includes(allowed), 'the capture sees what the logger writes (so absence below means something)')
  assert.ok(!log.text().includes(dropped), 'a field outside the allowlist is dropped')
  assert.equal(log.lines.length, 3)
})

test('TRANSIT-4 KEY-1: successful and failing requests never log prompt text, system prompts or keys', async (t) => {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const log = captureLog('debug')
  const tg = await startApp(t, { env: upstreamEnv(mock), log: log.logger })
  if (!tg) return
  const { sandbox, production } = await orgWithKeys(tg.deps)
  // Positive control on this very logger: a planted allowlisted marker is found.
  const control = marker('control')
  tg.deps.log.info({ reqId: control }, 'control')
  assert.ok(log.text().includes(control))

  const markers: string[] = []
  const m = (tag: string) => {
    const v = marker(tag)
    markers.push(v)
    return v
  }
  const auth = (key: string) => ({ authorization: `Bearer ${key}` })
  const requests: { path: string; body: string; headers: Record<string, string> }[] = []
  for (const key of [sandbox, production]) {
    for (const stream of [false, true]) {
      requests.push(
        { path: '/v1/messages', body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 20, stream, system: m('sys'), messages: [{ role: 'user', content: m('prompt') }] }), headers: auth(key) },
        { path: '/v1/chat/completions', body: JSON.stringify({ model: 'gpt-4o', stream, messages: [{ role: 'system', content: m('sys') }, { role: 'user', content: m('prompt') }] }), headers: auth(key) },
        { path: '/v1/intercept', body: JSON.stringify({ model: 'gemini-2.5-flash', stream, system: m('sys'), prompt: m('prompt'), attachments: [{ mime_type: 'text/plain', data: Buffer.from(m('attach')).toString('base64'), filename: `${m('file')}.txt` }] }), headers: { 'x-api-key': key } },
        // Upstream failures: the mock's error body quotes the prompt.
        { path: '/v1/messages', body: JSON.stringify({ model: 'claude-sonnet-4-5-fail-500', max_tokens: 20, stream, messages: [{ role: 'user', content: m('failprompt') }] }), headers: auth(key) },
        { path: '/v1/chat/completions', body: JSON.stringify({ model: 'gpt-4o-midstream', stream, messages: [{ role: 'user', content: m('midprompt') }] }), headers: auth(key) },
      )
    }
    requests.push(
      { path: '/v1/messages', body: `{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"${m('badjson')}"}`, headers: auth(key) },
      { path: '/v1/chat/completions', body: JSON.stringify({ model: 'gpt-4o', temperature: m('badfield'), messages: [{ role: 'user', content: m('prompt') }] }), headers: auth(key) },
      { path: '/v1/intercept', body: JSON.stringify({ model: `nosuch-${m('model')}`, prompt: m('prompt') }), headers: auth(key) },
      { path: '/v1/intercept', body: JSON.stringify({ model: 'local-echo', prompt: m('prompt'), [m('field')]: true }), headers: auth(key) },
    )
  }
  // Bad keys: a key-shaped secret never lands in the log either.
  const badKey = `tg_live_${m('key')}`
  requests.push(
    { path: '/v1/messages', body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 5, messages: [{ role: 'user', content: m('prompt') }] }), headers: auth(badKey) },
    { path: '/v1/chat/completions', body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: m('prompt') }] }), headers: { 'x-api-key': badKey } },
  )
  const statuses = new Set<number>()
  for (const r of requests) statuses.add((await call(tg.url + r.path, { body: r.body, headers: r.headers })).status)
  assert.ok(statuses.has(200) && statuses.has(400) && statuses.has(401) && statuses.has(404) && statuses.has(502), `a mix of outcomes: ${[...statuses]}`)
  await tg.deps.decisions.drain()

  const text = log.text()
  for (const v of markers) assert.ok(!text.includes(v), `the log contains request content (${v.slice(0, 14)}…)`)
  for (const key of [sandbox, production]) {
    assert.ok(!text.includes(key), 'a full API key is in the log')
    assert.ok(!text.includes(key.split('_')[3]!.slice(0, 20)), 'the secret part of an API key is in the log')
  }
  assert.doesNotMatch(text, /mock (anthropic|openai|gemini) refused|overloaded while answering/)
  // The log did record these requests: one access line each, with ids and codes only.
  const lines = log.lines.map((l) => JSON.parse(l) as Record<string, unknown>)
  const access = lines.filter((l) => l['msg'] === 'request')
  assert.ok(access.length >= requests.length, `${access.length} access lines for ${requests.length} requests`)
  for (const l of lines) {
    for (const k of Object.keys(l)) assert.ok(['level', 'time', 'msg'].includes(k) || /^[a-zA-Z]+$/.test(k))
  }
})

test('TRANSIT-4 TRANSIT-5: access log lines carry the route pattern, never the raw URL (query strings and path segments stay out)', async (t) => {
  const log = captureLog('debug')
  const tg = await startApp(t, { log: log.logger })
  if (!tg) return
  const { sandbox } = await orgWithKeys(tg.deps)
  const q = marker('query')
  const seg = marker('segment')
  const probes = [
    { url: `/v1/intercept?prompt=${q}&key=${q}`, body: JSON.stringify({ model: 'local-echo', prompt: 'hello' }), route: '/v1/intercept', status: 200 },
    { url: `/v1/messages?beta=${q}`, body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }), route: '/v1/messages', status: 200 },
    { url: `/healthz?x=${q}`, route: '/healthz', status: 200 },
    { url: `/v1/models/${seg}`, route: 'unmatched', status: 404 },
    { url: `/api/keys/${seg}/rotate?token=${q}`, route: 'unmatched', status: 404 },
    { url: `/v1/intercept/${seg}`, body: '{}', route: 'unmatched', status: 404 },
  ]
  for (const p of probes) {
    const res = await call(tg.url + p.url, { ...(p.body !== undefined ? { body: p.body } : {}), headers: { authorization: `Bearer ${sandbox}` } })
    assert.equal(res.status, p.status, `${p.url}: ${res.text}`)
    assert.ok(!res.text.includes(q) && !res.text.includes(seg), 'the response does not echo the URL')
    const id = res.headers.get('x-request-id')
    // The access line is written when the response closes.
    let line: Record<string, unknown> | undefined
    for (const deadline = Date.now() + 5000; !line && Date.now() < deadline;) {
      line = log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'request' && l['reqId'] === id)
      if (!line) await new Promise((r) => setTimeout(r, 5))
    }
    assert.ok(line, `an access line for ${p.url}`)
    assert.equal(line['route'], p.route)
    assert.equal(line['status'], p.status)
    assert.equal(line['method'], p.body !== undefined ? 'POST' : 'GET')
    assert.equal(typeof line['ms'], 'number')
  }
  const text = log.text()
  assert.ok(!text.includes(q), 'a query string reached the log')
  assert.ok(!text.includes(seg), 'a raw path segment reached the log')
  // Metrics labels are route patterns too.
  const metrics = await (await fetch(`${tg.url}/metrics`)).text()
  assert.ok(!metrics.includes(q) && !metrics.includes(seg), 'a raw URL reached a metrics label')
})

test('TRANSIT-4: the decision record\'s prompt_fingerprint is HMAC-SHA-256 under the org key — stable in one org, unlinkable across orgs, not a bare SHA-256', async (t) => {
  const tg = await startApp(t)
  if (!tg) return
  const a = await orgWithKeys(tg.deps)
  const b = await orgWithKeys(tg.deps)
  const prompt = `What is ${marker('fp')}?`
  const send = async (key: string, path: string, body: unknown) => {
    const res = await call(tg.url + path, { body: JSON.stringify(body), headers: { authorization: `Bearer ${key}` } })
    assert.equal(res.status, 200, res.text)
    await tg.deps.decisions.drain()
    const row = await tg.deps.db.db.selectFrom('decision').select(['prompt_fingerprint', 'org_id']).where('request_id', '=', res.headers.get('x-request-id')!).executeTakeFirstOrThrow()
    assert.ok(row.prompt_fingerprint)
    return row.prompt_fingerprint
  }
  const native = { model: 'local-echo', prompt }
  const a1 = await send(a.sandbox, '/v1/intercept', native)
  const a2 = await send(a.sandbox, '/v1/intercept', native)
  const a3 = await send(a.sandbox, '/v1/messages', { model: 'local-echo', max_tokens: 5, messages: [{ role: 'user', content: prompt }] })
  const b1 = await send(b.sandbox, '/v1/intercept', native)
  const aOther = await send(a.sandbox, '/v1/intercept', { model: 'local-echo', prompt: `${prompt}!` })

  assert.equal(a1, a2, 'the same prompt in one org has one fingerprint')
  assert.equal(a1, a3, 'whichever endpoint carried it')
  assert.notEqual(a1, b1, 'another org cannot link it')
  assert.notEqual(a1, aOther, 'another prompt has another fingerprint')
  // Not a bare (guessable) hash of the prompt in any usual encoding.
  const bare = [createHash('sha256').update(prompt).digest(), createHash('sha256').update(`prompt\0${prompt}`).digest()]
  for (const h of bare) for (const enc of ['hex', 'base64', 'base64url'] as const) {
    assert.notEqual(a1, h.toString(enc))
    assert.ok(!a1.includes(h.toString(enc).slice(0, 16)))
  }
  assert.ok(!a1.includes(prompt))
  // It is the HMAC-SHA-256 (256 bits, base64url) keyed with org A's own fingerprint key.
  assert.match(a1, /^[A-Za-z0-9_-]{43}$/)
  const request = nativeWire.parse(native, {})
  assert.equal(promptFingerprint(request, await tg.deps.keyring.key(a.org.id)), a1)
  assert.equal(promptFingerprint(request, await tg.deps.keyring.key(b.org.id)), b1)
  assert.notEqual(createHmac('sha256', Buffer.alloc(32)).update(prompt).digest('base64url'), a1)
})

test('TRANSIT-5: every response (200, 4xx, 5xx, streamed, /healthz, 404) carries Server-Timing with total, AI responses also auth (and upstream when called), and a fresh x-request-id; an inbound id is not echoed', async (t) => {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const tg = await startApp(t, { env: upstreamEnv(mock) })
  if (!tg) return
  const { production } = await orgWithKeys(tg.deps)
  const inbound = marker('reqid')
  const auth = { authorization: `Bearer ${production}`, 'x-request-id': `req_${inbound}`, 'request-id': inbound, traceparent: `00-${inbound}-01` }
  const probes: { name: string; path: string; body?: string; headers?: Record<string, string>; status: number; steps: string[] }[] = [
    { name: 'AI 200', path: '/v1/messages', body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }), headers: auth, status: 200, steps: ['auth', 'upstream'] },
    { name: 'AI 200 streamed', path: '/v1/chat/completions', body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'hi' }] }), headers: auth, status: 200, steps: ['auth', 'upstream'] },
    { name: 'AI 200 native', path: '/v1/intercept', body: JSON.stringify({ model: 'gemini-2.5-flash', prompt: 'hi' }), headers: auth, status: 200, steps: ['auth', 'upstream'] },
    { name: 'AI 400 bad JSON', path: '/v1/messages', body: '{"model":', headers: auth, status: 400, steps: ['auth'] },
    { name: 'AI 400 bad field', path: '/v1/intercept', body: JSON.stringify({ model: 'local-echo' }), headers: auth, status: 400, steps: ['auth'] },
    { name: 'AI 401', path: '/v1/chat/completions', body: JSON.stringify({ model: 'gpt-4o', messages: [] }), headers: { 'x-request-id': inbound }, status: 401, steps: ['auth'] },
    { name: 'AI 404 model', path: '/v1/intercept', body: JSON.stringify({ model: 'nosuch', prompt: 'hi' }), headers: auth, status: 404, steps: ['auth'] },
    { name: 'AI 415', path: '/v1/intercept', body: 'hi', headers: { ...auth, 'content-type': 'text/plain' }, status: 415, steps: ['auth'] },
    { name: 'AI 5xx upstream', path: '/v1/messages', body: JSON.stringify({ model: 'claude-sonnet-4-5-fail-500', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }), headers: auth, status: 502, steps: ['auth', 'upstream'] },
    { name: 'AI 5xx upstream streamed', path: '/v1/intercept', body: JSON.stringify({ model: 'gpt-4o-fail-503', stream: true, prompt: 'hi' }), headers: auth, status: 502, steps: ['auth', 'upstream'] },
    { name: '/healthz', path: '/healthz', headers: { 'x-request-id': inbound }, status: 200, steps: [] },
    { name: '/readyz', path: '/readyz', headers: { 'x-request-id': inbound }, status: 200, steps: [] },
    { name: '/metrics', path: '/metrics', headers: { 'x-request-id': inbound }, status: 200, steps: [] },
    { name: '/v1/models', path: '/v1/models', headers: auth, status: 200, steps: [] },
    { name: '/v1/models 401', path: '/v1/models', headers: { 'x-request-id': inbound }, status: 401, steps: [] },
    { name: '404', path: `/nope/${inbound}`, headers: { 'x-request-id': inbound }, status: 404, steps: [] },
    { name: '405-ish', path: '/v1/messages', headers: auth, status: 404, steps: [] },
  ]
  const ids = new Set<string>()
  for (const p of probes) {
    const res = await call(tg.url + p.path, { ...(p.body !== undefined ? { body: p.body } : {}), ...(p.headers ? { headers: { 'content-type': 'application/json', ...p.headers } } : {}) })
    assert.equal(res.status, p.status, `${p.name}: ${res.text.slice(0, 200)}`)
    const timing = res.headers.get('server-timing')
    assert.ok(timing, `${p.name}: Server-Timing is present`)
    const metrics = new Map(timing.split(/\s*,\s*/).map((part) => {
      const [name, ...params] = part.split(/\s*;\s*/)
      const dur = params.find((x) => x.startsWith('dur='))
      assert.ok(dur && Number.isFinite(Number(dur.slice(4))) && Number(dur.slice(4)) >= 0, `${p.name}: ${part} has a duration`)
      return [name!, Number(dur.slice(4))]
    }))
    assert.ok(metrics.has('total'), `${p.name}: total in ${timing}`)
    for (const s of p.steps) assert.ok(metrics.has(s), `${p.name}: ${s} in ${timing}`)
    if (!p.steps.includes('upstream')) assert.ok(!metrics.has('upstream'), `${p.name}: no upstream step when none was called (${timing})`)
    const id = res.headers.get('x-request-id')
    assert.match(id ?? '', /^req_[0-9A-Za-z]{17}$/, `${p.name}: x-request-id`)
    assert.ok(!ids.has(id!), 'request ids are unique')
    ids.add(id!)
    const all = [...res.headers.entries()].map(([k, v]) => `${k}: ${v}`).join('\n') + res.text
    assert.ok(!all.includes(inbound), `${p.name}: the inbound request id is not echoed`)
  }
})

test('TRANSIT-5 TRANSIT-4: an internal failure (the database is gone) still answers with Server-Timing and a request id, leaks no internals, and logs no content', async (t) => {
  const log = captureLog('debug')
  const tg = await startApp(t, { log: log.logger })
  if (!tg) return
  const { sandbox } = await orgWithKeys(tg.deps)
  await tg.deps.db.db.destroy()
  const m = marker('dbdown')
  for (const [path, body] of [
    ['/v1/messages', { model: 'claude-sonnet-4-5', max_tokens: 5, messages: [{ role: 'user', content: m }] }],
    ['/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: m }] }],
    ['/v1/intercept', { model: 'local-echo', prompt: m }],
  ] as const) {
    const res = await call(tg.url + path, { body: JSON.stringify(body), headers: { authorization: `Bearer ${sandbox}` } })
    assert.ok(res.status >= 500, `${path}: ${res.status}`)
    assert.match(res.headers.get('server-timing') ?? '', /(^|, )total;dur=[0-9.]+/, `${path}: Server-Timing`)
    assert.match(res.headers.get('x-request-id') ?? '', /^req_/)
    assert.ok(!res.text.includes(m))
    assert.doesNotMatch(res.text, /node_modules|\.ts:\d+|select|sqlite|driver|destroy/i, `${path}: ${res.text}`)
  }
  const text = log.text()
  assert.ok(!text.includes(m), 'the prompt is not in the log')
  assert.ok(!text.includes(sandbox), 'the key is not in the log')
  assert.ok(log.lines.some((l) => JSON.parse(l).msg === 'ai request failed'), 'the failure itself is logged (as a type and frames)')
})
