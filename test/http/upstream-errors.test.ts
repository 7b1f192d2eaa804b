import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import { ERRORS, type ErrorCode } from '../../src/core/errors.ts'
import { upstreamStatusError } from '../../src/providers/upstream.ts'
import { startMockUpstream, upstreamEnv, UPSTREAM_KEYS, type MockUpstream } from '../fakes/upstreams.ts'
import { orgWithKeys, startApp, type TestApp } from '../helpers/app.ts'
import { captureLog } from '../helpers/log.ts'

/**
 * GW-2: upstream failures become stable Tollgate codes in the client's own format (JSON, or an
 * error event once a stream has started). The upstream's error body — the mock's always quotes
 * the prompt — never reaches the client or the log. Each failure is recorded as upstream_error.
 */

type Client = 'anthropic' | 'openai' | 'native'
type Provider = 'anthropic' | 'openai' | 'gemini'

const CLIENTS: readonly { client: Client; path: string; body: (model: string, prompt: string, stream: boolean) => unknown }[] = [
  { client: 'anthropic', path: '/v1/messages', body: (model, prompt, stream) => ({ model, max_tokens: 32, stream, system: `system ${prompt}`, messages: [{ role: 'user', content: prompt }] }) },
  { client: 'openai', path: '/v1/chat/completions', body: (model, prompt, stream) => ({ model, stream, messages: [{ role: 'system', content: `system ${prompt}` }, { role: 'user', content: prompt }] }) },
  { client: 'native', path: '/v1/intercept', body: (model, prompt, stream) => ({ model, stream, system: `system ${prompt}`, prompt }) },
]
const MODEL: Record<Provider, string> = { anthropic: 'claude-sonnet-4-5', openai: 'gpt-4o', gemini: 'gemini-2.5-flash' }
const PROVIDERS = Object.keys(MODEL) as Provider[]

/** The stable code for each upstream status (the table in src/providers/upstream.ts). */
const STATUS_CODE: Record<number, ErrorCode> = {
  400: 'upstream_rejected_request',
  401: 'upstream_auth_failed',
  404: 'upstream_model_not_found',
  429: 'upstream_rate_limited',
  500: 'upstream_unavailable',
  503: 'upstream_unavailable',
  529: 'upstream_unavailable',
}

const marker = () => `MARK${randomBytes(8).toString('hex')}`

const ANTHROPIC_TYPE = (status: number) => status === 400 ? 'invalid_request_error' : status === 404 ? 'not_found_error' : status === 413 ? 'request_too_large'
  : status === 429 ? 'rate_limit_error' : status === 503 ? 'overloaded_error' : 'api_error'
const OPENAI_TYPE = (status: number) => status === 404 ? 'not_found_error' : status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error'

/** The error object a client of `client` format sees for `code` (JSON body or stream error event data). */
function assertClientError(client: Client, body: any, code: ErrorCode, where: string): void {
  const { status, message } = ERRORS[code]
  if (client === 'anthropic') {
    assert.equal(body.type, 'error', where)
    assert.deepEqual(body.error, { type: ANTHROPIC_TYPE(status), message }, where)
  } else if (client === 'openai') {
    assert.deepEqual(body.error, { message, type: OPENAI_TYPE(status), param: null, code }, where)
  } else {
    assert.equal(body.error.code, code, where)
    assert.equal(body.error.message, message, where)
  }
}

interface World {
  readonly tg: TestApp
  readonly mock: MockUpstream
  readonly log: ReturnType<typeof captureLog>
  readonly key: string
}

async function world(t: TestContext): Promise<World | undefined> {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const log = captureLog('debug')
  const tg = await startApp(t, { env: upstreamEnv(mock), log: log.logger })
  if (!tg) return undefined
  const { production } = await orgWithKeys(tg.deps)
  return { tg, mock, log, key: production }
}

async function post(w: World, path: string, body: unknown) {
  const res = await fetch(w.tg.url + path, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${w.key}` }, body: JSON.stringify(body) })
  const text = await res.text()
  return { status: res.status, headers: res.headers, text }
}

function assertAbsent(w: World, res: { headers: Headers; text: string }, m: string): void {
  assert.ok(!res.text.includes(m), 'the upstream error body (quoting the prompt) reached the client')
  assert.ok(![...res.headers.values()].some((v) => v.includes(m)), 'the prompt is in a response header')
  assert.ok(!res.text.includes('mock ') && !res.text.includes('refused'), 'no upstream error text is forwarded')
}

async function record(w: World, requestId: string) {
  await w.tg.deps.decisions.drain()
  const row = await w.tg.deps.db.db.selectFrom('decision').selectAll().where('request_id', '=', requestId).executeTakeFirst()
  assert.ok(row, `a decision record for ${requestId}`)
  return row
}

function sseEvents(text: string): { event: string | undefined; data: string }[] {
  return text.split('\n\n').filter((b) => b.trim()).map((b) => {
    let event: string | undefined
    const data: string[] = []
    for (const l of b.split('\n')) {
      if (l.startsWith('event: ')) event = l.slice(7)
      else if (l.startsWith('data: ')) data.push(l.slice(6))
    }
    return { event, data: data.join('\n') }
  })
}

test('GW-2: positive control — the mock upstream\'s error body really quotes the prompt', async (t) => {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const m = marker()
  const res = await fetch(`${mock.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${UPSTREAM_KEYS.openai}` },
    body: JSON.stringify({ model: 'gpt-4o-fail-500', messages: [{ role: 'user', content: m }] }),
  })
  assert.equal(res.status, 500)
  assert.ok((await res.text()).includes(m), 'so an absent marker below means Tollgate dropped it')
  // And the table the tests below expect is the gateway's own mapping.
  for (const [status, code] of Object.entries(STATUS_CODE)) assert.equal(upstreamStatusError(Number(status), 'x').code, code)
})

test('GW-2: upstream 400/401/404/429/500/503/529 map to stable codes in every client format (JSON and before a stream starts); nothing upstream-written is forwarded or logged', async (t) => {
  const w = await world(t)
  if (!w) return
  const markers: string[] = []
  const received = w.mock.received.length
  const one = async (c: (typeof CLIENTS)[number], provider: Provider, status: string, code: ErrorCode, stream: boolean) => {
    const m = marker()
    markers.push(m)
    const where = `${c.client} → ${provider} ${status}${stream ? ' (stream)' : ''}`
    const res = await post(w, c.path, c.body(`${MODEL[provider]}-fail-${status}`, m, stream))
    assert.equal(res.status, ERRORS[code].status, `${where}: ${res.text}`)
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/, `${where}: an error before the stream starts is a plain JSON error`)
    assertClientError(c.client, JSON.parse(res.text), code, where)
    assertAbsent(w, res, m)
    const row = await record(w, res.headers.get('x-request-id')!)
    assert.equal(row.outcome, 'upstream_error', where)
    assert.equal(row.error_code, code, where)
    assert.equal(row.status, ERRORS[code].status, where)
    assert.equal(row.provider, provider, where)
  }
  for (const c of CLIENTS) {
    for (const provider of PROVIDERS) {
      await Promise.all(Object.entries(STATUS_CODE).flatMap(([status, code]) => [false, true].map((stream) => one(c, provider, status, code, stream))))
    }
  }
  assert.equal(w.mock.received.length - received, markers.length, 'every request reached the upstream')
  const logs = w.log.text()
  for (const m of markers) assert.ok(!logs.includes(m), 'the upstream error body (quoting the prompt) reached the log')
  assert.doesNotMatch(logs, /mock (anthropic|openai|gemini) refused/)
  // Positive control: the failures were logged — as codes and statuses.
  const lines = w.log.lines.map((l) => JSON.parse(l))
  const failed = lines.filter((l) => l.msg === 'upstream call failed')
  assert.equal(failed.length, markers.length, 'every upstream failure is logged (without its body)')
  assert.ok(failed.some((l) => l.upstreamStatus === 529 && l.code === 'upstream_unavailable'))
})

test('GW-2: an upstream that answers 200 with garbage → upstream_invalid_response in every client format; nothing of it forwarded', async (t) => {
  const w = await world(t)
  if (!w) return
  for (const c of CLIENTS) {
    for (const provider of PROVIDERS) {
      const m = marker()
      const where = `${c.client} → ${provider} garbage`
      const res = await post(w, c.path, c.body(`${MODEL[provider]}-garbage`, m, false))
      assert.equal(res.status, 502, `${where}: ${res.text}`)
      assertClientError(c.client, JSON.parse(res.text), 'upstream_invalid_response', where)
      assert.ok(!res.text.includes('not json') && !res.text.includes('<html>'), 'the garbage is not forwarded')
      assertAbsent(w, res, m)
      const row = await record(w, res.headers.get('x-request-id')!)
      assert.deepEqual([row.outcome, row.error_code, row.status], ['upstream_error', 'upstream_invalid_response', 502], where)
    }
  }
  // Streaming from a garbage upstream never looks like a successful answer.
  for (const c of CLIENTS) {
    for (const provider of PROVIDERS) {
      const where = `${c.client} → ${provider} garbage (stream)`
      const res = await post(w, c.path, c.body(`${MODEL[provider]}-garbage`, marker(), true))
      assert.ok(!res.text.includes('not json') && !res.text.includes('<html>'), `${where}: the garbage is not forwarded`)
      const row = await record(w, res.headers.get('x-request-id')!)
      assert.equal(row.outcome, 'upstream_error', `${where}: ${res.text}`)
      assert.equal(row.error_code, 'upstream_invalid_response', where)
      if (res.status === 200) {
        const last = sseEvents(res.text).at(-1)!
        assertClientError(c.client, JSON.parse(last.data), 'upstream_invalid_response', where)
      } else {
        assert.equal(res.status, 502, where)
        assertClientError(c.client, JSON.parse(res.text), 'upstream_invalid_response', where)
      }
    }
  }
  assert.ok(!w.log.text().includes('not json'))
})

test('GW-2: a stream that fails mid-way (error event, dropped connection, or cut short) ends with an error in the client\'s format and a stable code; the upstream\'s error text is not forwarded or logged', async (t) => {
  const w = await world(t)
  if (!w) return
  // A second upstream that starts a real stream in each provider's format, then drops the
  // connection or ends the body early (the shared mock drops before its headers are flushed).
  const cut = await startCuttingUpstream()
  t.after(() => cut.close())
  const tg2 = await startApp(t, { env: { ANTHROPIC_API_KEY: 'k', ANTHROPIC_BASE_URL: cut.url, OPENAI_API_KEY: 'k', OPENAI_BASE_URL: `${cut.url}/v1`, GEMINI_API_KEY: 'k', GEMINI_BASE_URL: cut.url }, log: w.log.logger })
  if (!tg2) return
  const { production: key2 } = await orgWithKeys(tg2.deps)
  const w2: World = { tg: tg2, mock: w.mock, log: w.log, key: key2 }

  const markers: string[] = []
  const cases: { w: World; suffix: string; startedOnly: boolean }[] = [
    { w, suffix: '-midstream', startedOnly: false },
    { w: w2, suffix: '-drop', startedOnly: true },
    { w: w2, suffix: '-truncate', startedOnly: true },
  ]
  const one = async (k: (typeof cases)[number], c: (typeof CLIENTS)[number], provider: Provider) => {
    const m = marker()
    markers.push(m)
    const where = `${c.client} → ${provider}${k.suffix}`
    const res = await post(k.w, c.path, c.body(`${MODEL[provider]}${k.suffix}`, m, true))
    assertAbsent(k.w, res, m)
    assert.ok(!res.text.includes('overloaded while answering'), `${where}: the upstream's error event is not forwarded`)
    const row = await record(k.w, res.headers.get('x-request-id')!)
    assert.equal(row.outcome, 'upstream_error', `${where}: ${res.text}`)
    assert.ok(['upstream_unavailable', 'upstream_unreachable', 'upstream_invalid_response'].includes(row.error_code!), `${where}: ${row.error_code}`)
    assert.equal(row.status, ERRORS[row.error_code as ErrorCode].status)
    assert.equal(row.stream, 1)
    const code = row.error_code as ErrorCode
    if (res.status !== 200) {
      // The shared mock's dropped connections can fail before any byte: a plain JSON error.
      assert.ok(!k.startedOnly && provider !== 'anthropic', `${where}: expected a started stream, got ${res.status}`)
      assert.equal(res.status, ERRORS[code].status)
      assertClientError(c.client, JSON.parse(res.text), code, where)
      return
    }
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/)
    const evs = sseEvents(res.text)
    const last = evs.at(-1)!
    if (c.client !== 'openai') assert.equal(last.event, 'error', where)
    assertClientError(c.client, JSON.parse(last.data), code, where)
    assert.ok(!evs.some((e) => e.event === 'message_stop' || e.event === 'done' || e.data === '[DONE]'), `${where}: no success ending`)
    assert.ok(evs.length >= 2, `${where}: part of the answer was streamed before the failure`)
    assert.ok(res.text.includes('Hello '), where)
    if (k.suffix === '-truncate') assert.equal(code, 'upstream_invalid_response', where)
    if (k.suffix === '-drop') assert.equal(code, 'upstream_unreachable', where)
    if (k.suffix === '-midstream' && provider === 'anthropic') assert.equal(code, 'upstream_unavailable', where)
  }
  await Promise.all(cases.flatMap((k) => CLIENTS.flatMap((c) => PROVIDERS.map((p) => one(k, c, p)))))
  const logs = w.log.text()
  for (const m of markers) assert.ok(!logs.includes(m))
  assert.ok(!logs.includes('overloaded while answering'))
})

/**
 * An upstream that starts a 200 SSE answer in the caller's provider format, sends the first
 * events, then (model suffix) `-drop`s the connection or `-truncate`s the body cleanly.
 */
async function startCuttingUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const sse = (event: string | undefined, data: unknown) => (event ? `event: ${event}\n` : '') + `data: ${JSON.stringify(data)}\n\n`
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
      const path = new URL(req.url ?? '/', 'http://x').pathname
      const model = String(body.model ?? decodeURIComponent(/models\/([^:]+):/.exec(path)?.[1] ?? ''))
      const first = path === '/v1/messages'
        ? [sse('message_start', { type: 'message_start', message: { id: 'msg_x', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 3, output_tokens: 1 } } }),
            sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
            sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hello ' } })]
        : path === '/v1/chat/completions'
          ? [sse(undefined, { id: 'c', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }),
              sse(undefined, { id: 'c', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: { content: 'Hello ' }, finish_reason: null }] })]
          : [sse(undefined, { candidates: [{ content: { parts: [{ text: 'Hello ' }], role: 'model' }, index: 0 }] }),
              sse(undefined, { candidates: [{ content: { parts: [{ text: 'world ' }], role: 'model' }, index: 0 }] })]
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      for (const e of first) res.write(e)
      // Let the first events reach the gateway before cutting.
      setTimeout(() => (model.endsWith('-drop') ? res.destroy() : res.end()), 50)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections()
      server.close(() => r())
    }),
  }
}
