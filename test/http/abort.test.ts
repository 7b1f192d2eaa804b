import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startMockUpstream, upstreamEnv } from '../fakes/upstreams.ts'
import { orgWithKeys, startApp, until, type TestApp } from '../helpers/app.ts'

/**
 * GW-2: a client that goes away cancels the upstream call (no orphaned provider requests,
 * no tokens spent for nobody), and the request is still recorded — as `aborted`.
 */

const CASES = [
  { path: '/v1/messages', provider: 'anthropic', body: (model: string, stream: boolean) => ({ model, max_tokens: 32, stream, messages: [{ role: 'user', content: 'wait for me' }] }) },
  { path: '/v1/chat/completions', provider: 'openai', body: (model: string, stream: boolean) => ({ model, stream, messages: [{ role: 'user', content: 'wait for me' }] }) },
  { path: '/v1/intercept', provider: 'gemini', body: (model: string, stream: boolean) => ({ model, stream, prompt: 'wait for me' }) },
] as const

const MODEL = { anthropic: 'claude-sonnet-4-5', openai: 'gpt-4o', gemini: 'gemini-2.5-flash' } as const

async function recordFor(tg: TestApp, requestId: string) {
  let row: Awaited<ReturnType<typeof find>>
  async function find() {
    await tg.deps.decisions.drain()
    return tg.deps.db.db.selectFrom('decision').selectAll().where('request_id', '=', requestId).executeTakeFirst()
  }
  await until(`the decision record of ${requestId}`, async () => (row = await find()) !== undefined)
  return row!
}

test('GW-2: a client that aborts a JSON request to a hanging upstream cancels the upstream request; the decision record says aborted', async (t) => {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const tg = await startApp(t, { env: upstreamEnv(mock) })
  if (!tg) return
  const { production, productionId } = await orgWithKeys(tg.deps)
  let aborts = 0
  for (const c of CASES) {
    const ac = new AbortController()
    const received = mock.received.length
    const res = fetch(tg.url + c.path, {
      method: 'POST', signal: ac.signal,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${production}` },
      body: JSON.stringify(c.body(`${MODEL[c.provider]}-hang`, false)),
    })
    // Abort only once the request really is upstream.
    await until(`${c.provider} to receive the request`, () => mock.received.length > received)
    assert.equal(mock.received.at(-1)!.provider, c.provider)
    ac.abort()
    await assert.rejects(res, { name: 'AbortError' })
    await mock.waitForAborts(++aborts, 5000)

    await tg.deps.decisions.drain()
    await until('the aborted decision record', async () => {
      await tg.deps.decisions.drain()
      const n = await tg.deps.db.db.selectFrom('decision').select('id').where('outcome', '=', 'aborted').where('endpoint', '=', c.path === '/v1/messages' ? 'anthropic' : c.path === '/v1/chat/completions' ? 'openai' : 'native').execute()
      return n.length === 1
    })
  }
  const rows = await tg.deps.db.db.selectFrom('decision').selectAll().execute()
  assert.equal(rows.length, CASES.length, 'one record per request, nothing else')
  for (const r of rows) {
    assert.equal(r.outcome, 'aborted')
    assert.equal(r.key_id, productionId)
    assert.equal(r.stream, 0)
    assert.equal(r.status, 499)
    assert.ok(r.provider === 'anthropic' || r.provider === 'openai' || r.provider === 'gemini')
  }
})

test('GW-2: a client that aborts a slow stream mid-way cancels the upstream stream; the decision record says aborted', async (t) => {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const tg = await startApp(t, { env: upstreamEnv(mock) })
  if (!tg) return
  const { production } = await orgWithKeys(tg.deps)
  let aborts = 0
  for (const c of CASES) {
    const ac = new AbortController()
    const res = await fetch(tg.url + c.path, {
      method: 'POST', signal: ac.signal,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${production}` },
      body: JSON.stringify(c.body(`${MODEL[c.provider]}-slow`, true)),
    })
    assert.equal(res.status, 200)
    const requestId = res.headers.get('x-request-id')!
    assert.ok(requestId)
    // Read the first bytes of the stream, then go away mid-answer.
    const reader = res.body!.getReader()
    const first = await reader.read()
    assert.ok(!first.done && first.value.length > 0, 'the stream had started')
    ac.abort()
    await reader.read().catch(() => undefined)
    await mock.waitForAborts(++aborts, 5000)

    const row = await recordFor(tg, requestId)
    assert.equal(row.outcome, 'aborted')
    assert.equal(row.stream, 1)
    assert.equal(row.provider, c.provider)
    assert.equal(row.status, 499)
  }
  // The mock's slow streams were cut short: none of them ran to its end.
  assert.equal(mock.aborted, CASES.length)
})
