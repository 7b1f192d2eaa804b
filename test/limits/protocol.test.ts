import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { connect, type Socket } from 'node:net'
import { test, type TestContext } from 'node:test'
import { loadConfig } from '../../src/config/load.ts'
import { ERRORS, type ErrorCode } from '../../src/core/errors.ts'
import { orgWithKeys, startApp, type TestApp } from '../helpers/app.ts'
import { startMockUpstream, upstreamEnv } from '../fakes/upstreams.ts'

/**
 * T91 (LIMIT-3): protocol abuse on raw sockets. Request-smuggling shapes (CL.TE, TE.CL, duplicate
 * and malformed Content-Length, odd Transfer-Encodings, obs-fold, bad chunk framing, CR/LF
 * injection…) are refused with 400 and the connection is closed, so bytes after the refusal are
 * never read as a request: a smuggled GET to a path of its own never reaches the server (every
 * request Node hands to the app is observed). Headers over TOLLGATE_MAX_HEADER_BYTES get 431,
 * bodies over TOLLGATE_BODY_LIMIT_BYTES 413, slowloris clients are cut off within the timeout
 * + 1 s, TRACE/TRACK are refused without echo, and TOLLGATE_MAX_CONNECTIONS holds.
 */

const HEADERS_TIMEOUT_MS = 1000
const REQUEST_TIMEOUT_MS = 2000
const BODY_LIMIT = 65_536

interface RawResponse {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string
}

interface RawResult {
  /** Everything the server sent, as latin1 (one char per byte). */
  readonly text: string
  readonly responses: RawResponse[]
  /** Status lines in the whole output: more than the responses we expect means a desync. */
  readonly statusLines: number
  /** The server closed the connection (before we gave up waiting). */
  readonly closedByServer: boolean
  /** Milliseconds from connect to the server's close (or to giving up). */
  readonly ms: number
}

function parseResponses(text: string): RawResponse[] {
  const out: RawResponse[] = []
  let rest = text
  while (rest.startsWith('HTTP/')) {
    const end = rest.indexOf('\r\n\r\n')
    if (end < 0) break
    const lines = rest.slice(0, end).split('\r\n')
    const headers: Record<string, string> = {}
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':')
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
    }
    rest = rest.slice(end + 4)
    let body = ''
    if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length'])
      body = rest.slice(0, n)
      rest = rest.slice(n)
    } else if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const eol = rest.indexOf('\r\n')
        if (eol < 0) break
        const size = parseInt(rest.slice(0, eol), 16)
        rest = rest.slice(eol + 2)
        if (!(size > 0)) {
          rest = rest.slice(rest.indexOf('\r\n') + 2)
          break
        }
        body += rest.slice(0, size)
        rest = rest.slice(size + 2)
      }
    } else {
      body = rest
      rest = ''
    }
    out.push({ status: Number(lines[0]!.split(' ')[1]), headers, body: Buffer.from(body, 'latin1').toString('utf8') })
  }
  return out
}

/**
 * Opens a raw connection, writes `payload` (a list is written piece by piece, `gapMs` apart),
 * then optionally a follow-up request on the same connection, and collects everything until the
 * server closes or `waitMs` passes.
 */
async function raw(port: number, payload: string | Buffer | (string | Buffer)[], o: { waitMs?: number; gapMs?: number; followUp?: string; onSocket?: (s: Socket) => void } = {}): Promise<RawResult> {
  const t0 = performance.now()
  const s = connect(port, '127.0.0.1')
  o.onSocket?.(s)
  const chunks: Buffer[] = []
  s.on('data', (d: Buffer) => chunks.push(d))
  s.on('error', () => {})
  // Closed by the server: a FIN or a reset (the server may close with unread bytes pending).
  let closedAt = 0
  const closed = new Promise<void>((resolve) => s.once('close', () => {
    closedAt = performance.now()
    resolve()
  }))
  await new Promise<void>((resolve) => s.once('connect', () => resolve()))
  const pieces = Array.isArray(payload) ? payload : [payload]
  for (const p of pieces) {
    if (s.destroyed || !s.writable) break
    s.write(p)
    if (o.gapMs) await new Promise((r) => setTimeout(r, o.gapMs))
  }
  if (o.followUp !== undefined) {
    await new Promise((r) => setTimeout(r, 150))
    if (!s.destroyed && s.writable) s.write(o.followUp)
  }
  const waitMs = o.waitMs ?? 2000
  await Promise.race([closed, new Promise((r) => setTimeout(r, waitMs))])
  const closedByServer = closedAt !== 0
  if (!closedByServer) {
    s.destroy()
    await closed
  }
  const text = Buffer.concat(chunks).toString('latin1')
  return { text, responses: parseResponses(text), statusLines: (text.match(/HTTP\/1\.[01] \d{3} /g) ?? []).length, closedByServer, ms: (closedAt || performance.now()) - t0 }
}

/** Tollgate's own error shape, with the table's code and message, and the base headers. */
function assertTollgateError(r: RawResponse, code: ErrorCode, what: string): void {
  assert.equal(r.status, ERRORS[code].status, `${what}: status`)
  assert.match(r.headers['content-type'] ?? '', /^application\/json; charset=utf-8$/, `${what}: content-type`)
  const j = JSON.parse(r.body) as { error: { code: string; message: string } }
  assert.equal(j.error.code, code, `${what}: code`)
  assert.equal(j.error.message, ERRORS[code].message, `${what}: message`)
  assert.equal(r.headers['cache-control'], 'no-store', `${what}: base headers`)
  assert.equal(r.headers['x-content-type-options'], 'nosniff', `${what}: base headers`)
}

function assertNoLeak(text: string, ...markers: string[]): void {
  for (const m of markers) assert.ok(!text.includes(m), `the response echoes ${m}`)
  assert.doesNotMatch(text, /node_modules|\bat [\w.<>]+ \(|\.ts:\d+|\.js:\d+|HPE_|ERR_HTTP/, 'no stack trace or parser internals')
}

interface World {
  readonly tg: TestApp
  readonly port: number
  readonly key: string
  readonly productionKey: string
  /** `METHOD url` of every request Node's parser handed to the app. */
  readonly seen: string[]
}

async function world(t: TestContext, env: Record<string, string> = {}): Promise<World | undefined> {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const tg = await startApp(t, {
    env: {
      TOLLGATE_BODY_LIMIT_BYTES: String(BODY_LIMIT), TOLLGATE_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS), TOLLGATE_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      ...upstreamEnv(mock), ...env,
    },
  })
  if (!tg) return undefined
  const keys = await orgWithKeys(tg.deps)
  const seen: string[] = []
  // Every request the HTTP parser produced reaches this listener (next to Fastify's own).
  tg.app.server.on('request', (req: IncomingMessage) => seen.push(`${req.method} ${req.url}`))
  return { tg, port: Number(new URL(tg.url).port), key: keys.sandbox, productionKey: keys.production, seen }
}

async function healthy(w: World): Promise<void> {
  const r = await fetch(`${w.tg.url}/healthz`)
  assert.equal(r.status, 200, 'the server keeps serving')
  await r.arrayBuffer()
}

const BODY = '{"model":"local-echo","prompt":"hi"}'

test('T91 LIMIT-3: ≥ 10 request-smuggling variants are refused with 400 and the connection closed; the smuggled request never reaches the app (0 desync)', async (t) => {
  const w = await world(t)
  if (!w) return
  const head = (extra: string) => `POST /v1/intercept HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${w.key}\r\nContent-Type: application/json\r\n${extra}\r\n`
  const tag = randomBytes(6).toString('hex')
  const chunked = (s: string) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n0\r\n\r\n`
  // Each variant hides `GET /smuggled-<tag>-<n>` where a parser that framed the message differently would read a new request.
  const variants: Array<[string, (smuggle: string) => string]> = [
    ['CL.TE (Content-Length and Transfer-Encoding: chunked)', (g) => head(`Content-Length: ${5 + g.length}\r\nTransfer-Encoding: chunked\r\n`) + `0\r\n\r\n${g}`],
    ['TE.CL (chunked first, then Content-Length)', (g) => head(`Transfer-Encoding: chunked\r\nContent-Length: 4\r\n`) + `${g.length.toString(16)}\r\n${g}\r\n0\r\n\r\n`],
    ['duplicate Content-Length, different values', (g) => head(`Content-Length: ${BODY.length}\r\nContent-Length: ${BODY.length + g.length}\r\n`) + BODY + g],
    ['duplicate Content-Length, same value', (g) => head(`Content-Length: ${BODY.length}\r\nContent-Length: ${BODY.length}\r\n`) + BODY + g],
    ['Content-Length as a list', (g) => head(`Content-Length: ${BODY.length}, ${BODY.length + g.length}\r\n`) + BODY + g],
    ['Content-Length with a sign', (g) => head(`Content-Length: +${BODY.length}\r\n`) + BODY + g],
    ['negative Content-Length', (g) => head('Content-Length: -1\r\n') + BODY + g],
    ['Transfer-Encoding: chunked, identity', (g) => head('Transfer-Encoding: chunked, identity\r\n') + chunked(BODY) + g],
    ['Transfer-Encoding: identity with Content-Length', (g) => head(`Transfer-Encoding: identity\r\nContent-Length: ${BODY.length}\r\n`) + BODY + g],
    ['Transfer-Encoding: xchunked', (g) => head('Transfer-Encoding: xchunked\r\n') + chunked(BODY) + g],
    ['two Transfer-Encoding headers', (g) => head('Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n') + chunked(BODY) + g],
    ['a space before the colon', (g) => head(`Transfer-Encoding : chunked\r\nContent-Length: ${BODY.length}\r\n`) + BODY + g],
    ['obs-fold continuing Transfer-Encoding', (g) => head(`Transfer-Encoding: identity\r\n chunked\r\nContent-Length: ${BODY.length}\r\n`) + BODY + g],
    ['obs-fold in another header', (g) => head(`X-Note: a\r\n b\r\nContent-Length: ${BODY.length}\r\n`) + BODY + g],
    ['chunk size not hex', (g) => head('Transfer-Encoding: chunked\r\n') + `zz\r\n${BODY}\r\n0\r\n\r\n${g}`],
    ['chunk size overflowing 64 bits', (g) => head('Transfer-Encoding: chunked\r\n') + `FFFFFFFFFFFFFFFFF1\r\n${BODY}\r\n0\r\n\r\n${g}`],
    ['negative chunk size', (g) => head('Transfer-Encoding: chunked\r\n') + `-1\r\n${BODY}\r\n0\r\n\r\n${g}`],
    ['chunk extension ended by a bare LF', (g) => head('Transfer-Encoding: chunked\r\n') + `${BODY.length.toString(16)};x\n${BODY}\r\n0\r\n\r\n${g}`],
    ['chunk data longer than its size', (g) => head('Transfer-Encoding: chunked\r\n') + `4\r\n${BODY}\r\n0\r\n\r\n${g}`],
    ['bare CR injected in a header value', (g) => head(`X-Note: a\rContent-Length: ${BODY.length + g.length}\r\nContent-Length: ${BODY.length}\r\n`) + BODY + g],
    ['bare LF injected in a header value', (g) => head(`X-Note: a\nContent-Length: ${BODY.length + g.length}\r\n`) + BODY + g],
    ['NUL in a header value', (g) => head(`X-Note: a\0b\r\nContent-Length: ${BODY.length}\r\n`) + BODY + g],
    ['LF-only line endings', (g) => `POST /v1/intercept HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked\nContent-Length: ${BODY.length}\n\n${BODY}${g}`],
    ['a space inside a header name', (g) => head(`Transfer Encoding: chunked\r\nContent-Length: ${BODY.length}\r\n`) + BODY + g],
    ['HTTP/1.0 with Transfer-Encoding: chunked', (g) => `POST /v1/intercept HTTP/1.0\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n0\r\n\r\n${g}`],
  ]
  assert.ok(variants.length >= 10)
  const decisionsBefore = (await w.tg.deps.db.db.selectFrom('decision').select('id').execute()).length
  const failures: string[] = []
  for (const [i, [name, build]] of variants.entries()) {
    const smuggled = `/smuggled-${tag}-${i}`
    const r = await raw(w.port, build(`GET ${smuggled} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`), { followUp: `GET ${smuggled}-followup HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n` })
    const first = r.responses[0]
    if (!first || first.status !== 400) failures.push(`${name}: expected 400, got ${first?.status ?? 'no response'}`)
    else {
      try {
        assertTollgateError(first, 'invalid_request', name)
      } catch (err) {
        failures.push(`${name}: ${(err as Error).message}`)
      }
    }
    if (r.statusLines !== 1) failures.push(`${name}: ${r.statusLines} responses on one connection (desync)`)
    if (!r.closedByServer) failures.push(`${name}: the connection stayed open after the refusal`)
    if (first && first.headers['connection'] !== 'close') failures.push(`${name}: no Connection: close`)
    if (w.seen.some((s) => s.includes(smuggled))) failures.push(`${name}: the smuggled request reached the app`)
    assertNoLeak(r.text, smuggled)
    await healthy(w)
  }
  assert.deepEqual(failures, [], failures.join('\n'))
  assert.deepEqual(w.seen.filter((s) => s.includes(`/smuggled-${tag}`)), [], 'no smuggled request reached the app')
  // The framing was refused before a body was read: no variant got as far as a decision.
  await w.tg.deps.decisions.drain()
  const recorded = (await w.tg.deps.db.db.selectFrom('decision').select('id').execute()).length - decisionsBefore
  assert.ok(recorded <= variants.length, `at most one decision per refused request (${recorded})`)

  // Positive control: the observer and the response counter see a second request on a connection when it is real.
  const control = `/smuggle-control-${tag}`
  const ok = await raw(w.port, `POST /v1/intercept HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${w.key}\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}GET ${control} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`, { waitMs: 60_000 })
  assert.deepEqual(ok.responses.map((r) => r.status), [200, 404], ok.text.slice(0, 500))
  assert.ok(w.seen.includes(`GET ${control}`), 'the observer sees a pipelined request')
})

test('T91 LIMIT-3: two Host headers → 400 in the caller\'s format (RFC 9112 §3.2)', async (t) => {
  const w = await world(t)
  if (!w) return
  const r = await raw(w.port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n')
  assertTollgateError(r.responses[0]!, 'invalid_request', 'two hosts on /healthz')
  const ai = await raw(w.port, `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nAuthorization: Bearer ${w.key}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`)
  const res = ai.responses[0]!
  assert.equal(res.status, 400)
  assert.equal((JSON.parse(res.body) as { error: { code: string } }).error.code, 'invalid_request', 'the OpenAI error shape')
  assertNoLeak(r.text + ai.text, 'evil.example')
})

test('T91 LIMIT-3: headers over TOLLGATE_MAX_HEADER_BYTES → 431 and the connection closed; under the limit they are served', async (t) => {
  const w = await world(t, { TOLLGATE_MAX_HEADER_BYTES: '16384' })
  if (!w) return
  const mark = `MARK${randomBytes(6).toString('hex')}`
  for (const [what, headers] of [
    ['one 100 KB header', `X-Big: ${mark}${'a'.repeat(100_000)}\r\n`],
    ['one header just over the limit', `X-Big: ${mark}${'a'.repeat(16_400)}\r\n`],
    ['many small headers adding up', Array.from({ length: 400 }, (_, i) => `X-H${i}: ${mark}${'b'.repeat(40)}\r\n`).join('')],
    ['a 20 KB request line', ''],
  ] as const) {
    const line = what.startsWith('a 20 KB') ? `GET /healthz?${mark}=${'c'.repeat(20_000)} HTTP/1.1` : 'GET /healthz HTTP/1.1'
    const r = await raw(w.port, `${line}\r\nHost: 127.0.0.1\r\n${headers}\r\n`, { followUp: 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' })
    assert.equal(r.responses.length, 1, `${what}: one response`)
    assertTollgateError(r.responses[0]!, 'headers_too_large', what)
    assert.equal(r.statusLines, 1, `${what}: the follow-up on the same connection is not served`)
    assert.ok(r.closedByServer, `${what}: the connection is closed`)
    assertNoLeak(r.text, mark)
  }
  // The limit is the setting, not something smaller: 15,000 bytes of headers are fine.
  const fits = await raw(w.port, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(15_000)}\r\nConnection: close\r\n\r\n`)
  assert.equal(fits.responses[0]?.status, 200)
})

test('T91 LIMIT-3: bodies over TOLLGATE_BODY_LIMIT_BYTES → 413 (declared or chunked) and the rest of the body is never read as a request', async (t) => {
  const w = await world(t)
  if (!w) return
  const tag = randomBytes(6).toString('hex')
  const smuggle = `GET /smuggled-${tag} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`
  const pad = (n: number) => `{"model":"local-echo","prompt":"${'x'.repeat(n)}"}`
  // Declared too large: refused from the header, before the body is read.
  const declared = await raw(w.port, `POST /v1/intercept HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${w.key}\r\nContent-Type: application/json\r\nContent-Length: ${BODY_LIMIT + 1000}\r\n\r\n${smuggle}${'y'.repeat(2000)}`, { followUp: smuggle })
  assert.equal(declared.responses[0]?.status, 413, declared.text.slice(0, 300))
  assert.equal((JSON.parse(declared.responses[0]!.body) as { error: { code: string } }).error.code, 'payload_too_large')
  assert.equal(declared.statusLines, 1)
  // Chunked, growing past the limit while it is read; request-shaped bytes sit in the body beyond the limit.
  const big = pad(BODY_LIMIT * 2)
  const pieces = [`POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: ${w.key}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`]
  for (let i = 0; i < big.length; i += 16_384) pieces.push(chunkOf(big.slice(i, i + 16_384)))
  pieces.push(chunkOf(`\r\n\r\n${smuggle}`), '0\r\n\r\n')
  const streamed = await raw(w.port, pieces, { followUp: 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' })
  assert.equal(streamed.responses[0]?.status, 413, streamed.text.slice(0, 300))
  assert.equal((JSON.parse(streamed.responses[0]!.body) as { type: string; error: { type: string } }).error.type, 'request_too_large', 'the Anthropic error shape')
  // The server stops reading at the limit and closes: the rest of the stream, and what follows it, is never parsed.
  assert.equal(streamed.statusLines, 1, `one response: ${streamed.text.slice(0, 1500)}`)
  assert.equal(streamed.responses[0]!.headers['connection'], 'close')
  assert.ok(streamed.closedByServer)
  assert.deepEqual(w.seen.filter((s) => s.includes(tag)), [], 'the smuggled request never reached the app')
  await healthy(w)
})

function chunkOf(s: string): string {
  return `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`
}

test('T91 LIMIT-3: slowloris — headers dribbled a byte at a time, an idle connection, and a dribbled body are cut off within the timeout + 1 s, with 408; the server keeps serving meanwhile', async (t) => {
  const w = await world(t)
  if (!w) return
  const slowHead = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${'s'.repeat(200)}\r\n\r\n`
  const dribble = (s: string) => [...s]

  // 30 slowloris connections at once, one byte every 100 ms.
  const attackers = Array.from({ length: 30 }, () => raw(w.port, dribble(slowHead), { gapMs: 100, waitMs: HEADERS_TIMEOUT_MS + 4000 }))
  // During the attack the server answers others at once.
  await new Promise((r) => setTimeout(r, 300))
  const t0 = performance.now()
  await healthy(w)
  assert.ok(performance.now() - t0 < 1000, 'served during the attack')
  const results = await Promise.all(attackers)
  for (const r of results) {
    assert.ok(r.closedByServer, 'the server closed the slow connection')
    assert.ok(r.ms <= HEADERS_TIMEOUT_MS + 1000, `cut off after ${Math.round(r.ms)} ms (limit ${HEADERS_TIMEOUT_MS} + 1000)`)
    assert.ok(r.ms >= HEADERS_TIMEOUT_MS * 0.9, `not before the timeout (${Math.round(r.ms)} ms)`)
    assert.equal(r.responses.length, 1)
    assertTollgateError(r.responses[0]!, 'request_timeout', 'slow headers')
  }

  // A connection that sends nothing at all.
  const idle = await raw(w.port, [], { waitMs: HEADERS_TIMEOUT_MS + 4000 })
  assert.ok(idle.closedByServer && idle.ms <= HEADERS_TIMEOUT_MS + 1000, `idle connection closed after ${Math.round(idle.ms)} ms`)

  // Complete headers, then a body dribbled too slowly: cut off at the request timeout.
  const slowBody = await raw(w.port, [`POST /v1/intercept HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${w.key}\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\n\r\n`, ...dribble(BODY)], { gapMs: 200, waitMs: REQUEST_TIMEOUT_MS + 4000 })
  assert.ok(slowBody.closedByServer, 'the slow body is cut off')
  assert.ok(slowBody.ms <= REQUEST_TIMEOUT_MS + 1000, `cut off after ${Math.round(slowBody.ms)} ms (limit ${REQUEST_TIMEOUT_MS} + 1000)`)
  assert.ok(slowBody.ms >= REQUEST_TIMEOUT_MS * 0.9, `not before the request timeout (${Math.round(slowBody.ms)} ms)`)
  assert.equal(slowBody.responses[0]?.status, 408, slowBody.text.slice(0, 300))

  // Positive controls: a request dribbled within the limit is served, and the request timeout
  // bounds receiving the request, not the answer (a slow upstream keeps the connection).
  const slowButFine = await raw(w.port, dribble('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'), { gapMs: 8, waitMs: 3000 })
  assert.equal(slowButFine.responses[0]?.status, 200)
  const waiting = await raw(w.port, `POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: ${w.productionKey}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength('{"model":"claude-x-hang","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}')}\r\n\r\n{"model":"claude-x-hang","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, { waitMs: REQUEST_TIMEOUT_MS + 1500 })
  assert.equal(waiting.closedByServer, false, 'a request waiting on its upstream is not cut off by the request timeout')
  assert.equal(waiting.statusLines, 0)
  await healthy(w)
})

test('T91 LIMIT-3 (ASVS 13.4.4): TRACE and TRACK are refused (404/405) and nothing is echoed', async (t) => {
  const w = await world(t)
  if (!w) return
  const mark = `MARK${randomBytes(6).toString('hex')}`
  for (const method of ['TRACE', 'TRACK']) {
    for (const path of ['/', '/v1/messages', '/api/me']) {
      const r = await raw(w.port, `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: session=${mark}\r\nX-Echo: ${mark}\r\nConnection: close\r\n\r\n`)
      const res = r.responses[0]
      assert.ok(res && (res.status === 404 || res.status === 405), `${method} ${path}: got ${res?.status}`)
      if (res.status === 405) assert.match(res.headers['allow'] ?? '', /GET/, 'a 405 says what is allowed')
      assert.doesNotMatch(res.headers['content-type'] ?? '', /message\/http/)
      assertNoLeak(r.text, mark, 'X-Echo')
    }
  }
})

test('T91 LIMIT-3: TOLLGATE_MAX_CONNECTIONS caps open connections; a freed slot is usable again', async (t) => {
  const w = await world(t, { TOLLGATE_MAX_CONNECTIONS: '4', TOLLGATE_HEADERS_TIMEOUT_MS: '10000', TOLLGATE_REQUEST_TIMEOUT_MS: '10000' })
  if (!w) return
  assert.equal(w.tg.app.server.maxConnections, 4)
  const held: Socket[] = []
  for (let i = 0; i < 4; i++) {
    const s = connect(w.port, '127.0.0.1')
    s.on('error', () => {})
    await new Promise<void>((resolve) => s.once('connect', () => resolve()))
    s.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n') // unfinished: the connection stays busy
    held.push(s)
  }
  await waitFor(async () => (await count(w)) === 4)
  const refused = await raw(w.port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n', { waitMs: 3000 })
  assert.equal(refused.statusLines, 0, 'the fifth connection is not served')
  assert.ok(refused.closedByServer, 'the fifth connection is closed at once')
  held.pop()!.destroy()
  await waitFor(async () => (await count(w)) === 3)
  const again = await raw(w.port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
  assert.equal(again.responses[0]?.status, 200, 'a freed slot serves again')
  for (const s of held) s.destroy()
})

function count(w: World): Promise<number> {
  return new Promise((resolve, reject) => w.tg.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))))
}

async function waitFor(cond: () => Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > until) throw new Error('condition not reached')
    await new Promise((r) => setTimeout(r, 20))
  }
}

test('LIMIT-3: the protocol limits are validated settings with documented defaults', () => {
  const r = loadConfig({})
  assert.ok(r.ok)
  const s = r.config.server
  assert.deepEqual([s.maxHeaderBytes, s.headersTimeoutMs, s.requestTimeoutMs, s.maxConnections, s.jsonMaxDepth], [16384, 10000, 60000, 1024, 64])
  assert.deepEqual([r.config.limits.maxAttachments, r.config.limits.maxAttachmentBytes, r.config.limits.maxAttachmentsTotalBytes], [16, 5 * 1024 * 1024, 8 * 1024 * 1024])
  const bad = loadConfig({ TOLLGATE_MAX_HEADER_BYTES: '12', TOLLGATE_HEADERS_TIMEOUT_MS: '5000', TOLLGATE_REQUEST_TIMEOUT_MS: '4000', TOLLGATE_MAX_CONNECTIONS: '0', TOLLGATE_JSON_MAX_DEPTH: 'deep', TOLLGATE_MAX_ATTACHMENTS: '-1', TOLLGATE_MAX_ATTACHMENT_BYTES: '1e9', TOLLGATE_MAX_ATTACHMENTS_TOTAL_BYTES: '5' })
  assert.equal(bad.ok, false)
  const problems = (bad as { problems: string[] }).problems.join('\n')
  for (const env of ['TOLLGATE_MAX_HEADER_BYTES', 'TOLLGATE_HEADERS_TIMEOUT_MS must not be larger than TOLLGATE_REQUEST_TIMEOUT_MS', 'TOLLGATE_MAX_CONNECTIONS', 'TOLLGATE_JSON_MAX_DEPTH', 'TOLLGATE_MAX_ATTACHMENTS must', 'TOLLGATE_MAX_ATTACHMENT_BYTES', 'TOLLGATE_MAX_ATTACHMENTS_TOTAL_BYTES']) {
    assert.ok(problems.includes(env), `a problem for ${env}:\n${problems}`)
  }
})
