import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { serve } from '../../src/cli/serve.ts'
import { buildStores } from '../../src/deps.ts'
import { silentLogger } from '../../src/observe/log.ts'
import { openDatabase } from '../../src/storage/database.ts'
import { startMockUpstream, upstreamEnv } from '../fakes/upstreams.ts'
import { orgWithKeys, startApp, testConfig } from '../helpers/app.ts'

/** OPS-1: health, readiness, Prometheus metrics, graceful shutdown that finishes in-flight requests. */

const marker = () => `MARK${randomBytes(8).toString('hex')}`

async function getJson(url: string) {
  const res = await fetch(url)
  return { status: res.status, headers: res.headers, json: (await res.json()) as any }
}

for (const variant of [{ name: 'SQLite + memory cache', postgres: false, redis: false }, { name: 'PostgreSQL + Redis', postgres: true, redis: true }]) {
  test(`OPS-1: /healthz is 200; /readyz is 200 with database and cache ok, and 503 once the database is gone (${variant.name})`, async (t) => {
    const tg = await startApp(t, { postgres: variant.postgres, redis: variant.redis })
    if (!tg) return
    const health = await getJson(`${tg.url}/healthz`)
    assert.equal(health.status, 200)
    assert.deepEqual(health.json, { status: 'ok' })
    assert.match(health.headers.get('content-type') ?? '', /^application\/json; charset=utf-8/)

    const ready = await getJson(`${tg.url}/readyz`)
    assert.equal(ready.status, 200)
    assert.deepEqual(ready.json, { status: 'ready', checks: { database: 'ok', cache: 'ok', classifier: 'ok' } })

    // Break the database under the running server.
    await tg.deps.db.db.destroy()
    const broken = await getJson(`${tg.url}/readyz`)
    assert.equal(broken.status, 503)
    assert.deepEqual(broken.json, { status: 'not_ready', checks: { database: 'failing', cache: 'ok', classifier: 'ok' } })
    assert.doesNotMatch(JSON.stringify(broken.json), /select|sqlite|postgres|driver|destroy/i, 'readiness names the failing check, never its error')
    // Liveness does not depend on the database: the process is alive.
    assert.equal((await getJson(`${tg.url}/healthz`)).status, 200)
  })
}

test('OPS-1: /readyz is 503 with cache failing when Redis is gone', async (t) => {
  const tg = await startApp(t, { redis: true })
  if (!tg) return
  assert.equal((await getJson(`${tg.url}/readyz`)).status, 200)
  await tg.deps.cache.close()
  const broken = await getJson(`${tg.url}/readyz`)
  assert.equal(broken.status, 503)
  assert.deepEqual(broken.json, { status: 'not_ready', checks: { database: 'ok', cache: 'failing', classifier: 'ok' } })
})

test('OPS-1 TRANSIT-4: /metrics is Prometheus text with request and decision counters after traffic, and no prompt text', async (t) => {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const tg = await startApp(t, { env: upstreamEnv(mock) })
  if (!tg) return
  const { production, sandbox } = await orgWithKeys(tg.deps)
  const m = marker()
  const post = (path: string, key: string, body: unknown) =>
    fetch(tg.url + path, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify(body) }).then(async (r) => [r.status, await r.text()] as const)
  assert.equal((await post('/v1/messages', production, { model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user', content: m }] }))[0], 200)
  assert.equal((await post('/v1/chat/completions', production, { model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: m }] }))[0], 200)
  assert.equal((await post('/v1/intercept', sandbox, { model: 'local-echo', prompt: m }))[0], 200)
  assert.equal((await post('/v1/intercept', sandbox, { model: `nosuch-${m}`, prompt: m }))[0], 404)
  assert.equal((await post('/v1/messages', production, { model: 'claude-sonnet-4-5-fail-500', max_tokens: 8, messages: [{ role: 'user', content: m }] }))[0], 502)
  assert.equal((await post('/v1/intercept', 'tg_live_nope', { model: 'local-echo', prompt: m }))[0], 401)
  await fetch(`${tg.url}/nowhere/${m}?q=${m}`)
  await tg.deps.decisions.drain()

  const res = await fetch(`${tg.url}/metrics`)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  const text = await res.text()
  // Prometheus exposition format: HELP/TYPE lines, then samples.
  assert.match(text, /^# HELP tollgate_http_requests_total /m)
  assert.match(text, /^# TYPE tollgate_http_requests_total counter$/m)
  assert.match(text, /^# TYPE tollgate_decisions_total counter$/m)
  const sample = (name: string, labels: Record<string, string>) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)))
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  assert.equal(sample('tollgate_http_requests_total', { route: '/v1/messages', method: 'POST', status: '200' }), 1)
  assert.equal(sample('tollgate_http_requests_total', { route: '/v1/intercept', method: 'POST', status: '404' }), 1)
  assert.equal(sample('tollgate_http_requests_total', { route: 'unmatched', method: 'GET', status: '404' }), 1)
  assert.equal(sample('tollgate_decisions_total', { outcome: 'allowed', endpoint: 'anthropic' }), 1)
  assert.equal(sample('tollgate_decisions_total', { outcome: 'allowed', endpoint: 'openai' }), 1)
  assert.equal(sample('tollgate_decisions_total', { outcome: 'rejected', endpoint: 'native' }), 1)
  assert.equal(sample('tollgate_decisions_total', { outcome: 'upstream_error', endpoint: 'anthropic' }), 1)
  assert.ok((sample('tollgate_upstream_requests_total', { provider: 'anthropic', result: 'upstream_unavailable' }) ?? 0) >= 1)
  // Every sample line parses: name{labels} value.
  for (const l of text.split('\n')) if (l && !l.startsWith('#')) assert.match(l, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? -?[0-9.e+-]+|NaN|[+-]Inf$/, l)
  assert.ok(!text.includes(m), 'no request text (prompt, model string, URL) in the metrics')
  assert.ok(!text.includes(production) && !text.includes(sandbox))
})

/**
 * An Anthropic-format upstream whose stream starts at once and finishes only when the test
 * says so: the request is provably in flight for as long as the test needs.
 */
async function gatedUpstream(): Promise<{ url: string; started: Promise<void>; release(): void; close(): Promise<void> }> {
  let release!: () => void
  const gate = new Promise<void>((r) => (release = r))
  let started!: () => void
  const startedP = new Promise<void>((r) => (started = r))
  const ev = (name: string, data: object) => `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write(ev('message_start', { message: { id: 'msg_g', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 5, output_tokens: 1 } } }))
      res.write(ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }))
      res.write(ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hello, ' } }))
      started()
      void gate.then(() => {
        res.write(ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'finished answer.' } }))
        res.write(ev('content_block_stop', { index: 0 }))
        res.write(ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 4 } }))
        res.end(ev('message_stop', {}))
      })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    started: startedP,
    release,
    close: () => new Promise<void>((r) => {
      release()
      server.closeAllConnections()
      server.close(() => r())
    }),
  }
}

test('OPS-1: graceful shutdown — an in-flight stream completes and its decision record is committed, while new connections are refused', async (t) => {
  const upstream = await gatedUpstream()
  t.after(() => upstream.close())
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-ops-'))
  t.after(() => rmSync(dataDir, { recursive: true, force: true }))
  const config = testConfig({ TOLLGATE_DATA_DIR: dataDir, TOLLGATE_PORT: '0', TOLLGATE_SHUTDOWN_TIMEOUT_MS: '20000', ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: upstream.url })

  // The operator's setup: an org and a key, made with the same stores as the CLI.
  const stores = await buildStores(config, { log: silentLogger })
  const { production } = await orgWithKeys(stores)
  await stores.close()

  let stopNow!: (signal: string) => void
  const stop = new Promise<string>((r) => (stopNow = r))
  const stderr: string[] = []
  let onListening!: (url: string) => void
  const listening = new Promise<string>((r) => (onListening = r))
  const served = serve(config, { env: {}, execArgv: [], cwd: process.cwd(), stop }, {
    out: () => {},
    err: (s) => {
      stderr.push(s)
      const u = /listening on (http:\/\/[^\s]+)/.exec(s)?.[1]
      if (u) onListening(u)
    },
  })
  t.after(() => stopNow('cleanup'))
  const url = await Promise.race([listening, served.then((code) => assert.fail(`serve exited early with ${code}: ${stderr.join('\n')}`))])
  const port = Number(new URL(url).port)

  // A stream is in flight (the upstream holds it open until released)…
  const res = await fetch(`${url}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${production}` },
    body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 32, stream: true, messages: [{ role: 'user', content: 'take your time' }] }),
  })
  assert.equal(res.status, 200)
  await upstream.started
  const requestId = res.headers.get('x-request-id')!
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  let body = decoder.decode((await reader.read()).value)
  const rest = (async () => {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      body += decoder.decode(value, { stream: true })
    }
  })()

  // …when the process is asked to stop.
  stopNow('SIGTERM')

  // New connections are refused while that stream is still open.
  let refused = false
  for (let deadline = Date.now() + 10_000; Date.now() < deadline && !refused;) {
    const outcome = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port })
      s.once('connect', () => {
        s.destroy()
        resolve('connected')
      })
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
    })
    refused = outcome === 'ECONNREFUSED'
    if (!refused) await new Promise((r) => setTimeout(r, 10))
  }
  upstream.release()
  assert.ok(refused, 'new connections were refused while a request was in flight')

  await rest
  // Once the in-flight work is done the process stops promptly: it does not sit out the
  // shutdown timeout on the client's now-idle keep-alive connection.
  const endedAt = Date.now()
  const code = await served
  assert.ok(Date.now() - endedAt < 5000, `shutdown took ${Date.now() - endedAt} ms after the last response (timeout is 20 s)`)
  assert.equal(code, 0, 'a graceful shutdown exits 0')
  // The in-flight stream completed normally: the whole answer and Anthropic's final events.
  assert.match(body, /event: message_stop/)
  assert.ok(body.includes('finished answer.'), 'the whole answer arrived')
  assert.doesNotMatch(body, /event: error/)

  // Its decision record was committed before the process let go of the database.
  const db = openDatabase({ url: undefined, dataDir })
  try {
    const rows = await db.db.selectFrom('decision').selectAll().execute()
    assert.equal(rows.length, 1)
    assert.equal(rows[0]!.request_id, requestId)
    assert.equal(rows[0]!.outcome, 'allowed')
    assert.equal(rows[0]!.stream, 1)
    assert.equal(rows[0]!.status, 200)
    assert.equal(rows[0]!.output_tokens, 4)
  } finally {
    await db.close()
  }
})
