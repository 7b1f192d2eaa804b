import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startMockUpstream, upstreamEnv } from '../fakes/upstreams.ts'
import { InFlight } from '../../src/gateway/in-flight.ts'
import { orgWithKeys, startApp, until } from '../helpers/app.ts'

/**
 * The decision writer commits on the calling thread only while one AI request is in flight, so
 * the count must follow every AI route's requests from arrival until they end — answered,
 * aborted or refused before the handler — and never drift.
 */

test('AUDIT-2 TRANSIT-3 OPS-1: the in-flight count (and its metric) follows AI requests through answers, aborts and refusals, and each is recorded', async (t) => {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const tg = await startApp(t, { env: upstreamEnv(mock) })
  if (!tg) return
  const { production } = await orgWithKeys(tg.deps)
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${production}` }
  const post = (path: string, body: string, signal?: AbortSignal) => fetch(tg.url + path, { method: 'POST', headers, body, ...(signal ? { signal } : {}) })
  const count = () => tg.deps.inFlight.count
  assert.equal(count(), 0)

  // Requests held upstream are in flight until they end; operators see the count too (a scrape is not an AI request).
  const held = (path: string, body: object) => {
    const ac = new AbortController()
    return { ac, res: post(path, JSON.stringify(body), ac.signal) }
  }
  const a = held('/v1/chat/completions', { model: 'gpt-4o-hang', messages: [{ role: 'user', content: 'wait' }] })
  await until('the first held request to be in flight', () => count() === 1 && mock.received.length === 1)
  const b = held('/v1/messages', { model: 'claude-sonnet-4-5-hang', max_tokens: 16, messages: [{ role: 'user', content: 'wait too' }] })
  await until('two requests in flight', () => count() === 2 && mock.received.length === 2)
  assert.match(await (await fetch(`${tg.url}/metrics`)).text(), /^tollgate_ai_requests_in_flight 2$/m)

  // Aborted: the count comes down once its record is written.
  b.ac.abort()
  await assert.rejects(b.res, { name: 'AbortError' })
  await until('the aborted request to end', () => count() === 1)

  // Answered beside the held one.
  const answered = await post('/v1/messages', JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'hello' }] }))
  assert.equal(answered.status, 200)
  await answered.arrayBuffer()
  await until('the answered request to end', () => count() === 1)

  a.ac.abort()
  await assert.rejects(a.res, { name: 'AbortError' })
  await until('no request in flight', () => count() === 0)
  assert.match(await (await fetch(`${tg.url}/metrics`)).text(), /^tollgate_ai_requests_in_flight 0$/m)

  // Refused before the handler (malformed JSON, recorded through rejectAiRequest), and a challenge reply to nothing.
  assert.equal((await post('/v1/intercept', '{"prompt": ')).status, 400)
  assert.equal(count(), 0)
  assert.equal((await post('/v1/intercept/nothing-held/reply', JSON.stringify({ reply: 'because' }))).status, 404)
  assert.equal(count(), 0)

  await tg.deps.decisions.drain()
  const outcomes = (await tg.deps.db.db.selectFrom('decision').select(['outcome', 'status']).orderBy('created_at').execute()).map((r) => `${r.outcome}:${r.status}`).sort()
  assert.deepEqual(outcomes, ['aborted:499', 'aborted:499', 'allowed:200', 'rejected:400', 'rejected:404'])
})

test('AUDIT-2: InFlight counts a request until it settles, also when it throws', async () => {
  const inFlight = new InFlight()
  let release!: () => void
  const a = inFlight.around(() => new Promise<void>((r) => { release = r }))
  const b = inFlight.around(async () => { throw new Error('boom') })
  assert.equal(inFlight.count, 2)
  await assert.rejects(b)
  assert.equal(inFlight.count, 1)
  release()
  await a
  assert.equal(inFlight.count, 0)
})
