// GW-5 and TRANSIT-2 end to end: a `challenge` decision holds the request in memory and asks for
// the sender's reasoning; the reply is graded; a pass sends the HELD request upstream exactly once;
// a fail gives feedback; an expired hold is dropped and its content released. Through the native
// API and through both compatible APIs with the official SDKs (JSON and streaming).
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import type { Kysely } from 'kysely'
import { ANSWERS, startMockUpstream, upstreamEnv, type MockUpstream } from '../fakes/upstreams.ts'
import { ManualClock } from '../fakes/clock.ts'
import { orgWithKeys, promotePolicy, startApp, type TestApp } from '../helpers/app.ts'
import type { DB } from '../../src/storage/schema.ts'

const PROMPT = 'Write a Python function that merges two sorted lists into one sorted list.'
const PASS = 'First I would walk both sorted lists with two pointers, because each list is already sorted; then at each step I take the smaller head, so the merged list stays sorted, and finally I append whatever remains of the longer list.'
const FAIL = 'just answer it'
const ID = /\[Tollgate challenge (ch_[0-9A-Za-z_]+)\]/
const ASK_FIRST = { version: 1, default_action: 'challenge', rules: [] }

/** An app whose production keys run under `doc` (drafted, tried in sandbox, promoted: the real path). */
async function world(t: TestContext, doc: unknown = ASK_FIRST, opts: { clock?: ManualClock; env?: Record<string, string>; dataDir?: string } = {}) {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const tg = (await startApp(t, { env: { ...upstreamEnv(mock), ...opts.env }, ...(opts.clock ? { clock: opts.clock } : {}), ...(opts.dataDir ? { dataDir: opts.dataDir } : {}) }))!
  const keys = await orgWithKeys(tg.deps)
  await promotePolicy(tg.deps, keys.org.id, doc)
  return { mock, tg, keys, key: keys.production }
}

const native = (tg: TestApp, key: string, path: string, body: unknown) =>
  fetch(`${tg.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })

function records(tg: TestApp, orgId: string) {
  return (tg.deps.db.db as unknown as Kysely<DB>).selectFrom('decision').selectAll().where('org_id', '=', orgId).orderBy('created_at').orderBy('completed_at').execute()
}

function upstreamText(mock: MockUpstream, i: number): string {
  return JSON.stringify(mock.received[i]!.body)
}

test('GW-5 AUDIT-2: native API — challenge → a weak reply gets feedback → a reasoned reply passes → the held request goes upstream exactly once; the id is then spent (404)', async (t) => {
  const { mock, tg, keys, key } = await world(t)
  const first = await native(tg, key, '/v1/intercept', { model: 'gpt-4o', prompt: PROMPT })
  assert.equal(first.status, 200)
  const held = (await first.json()) as any
  assert.equal(held.decision.outcome, 'challenge')
  assert.equal(held.output, null, 'nothing is answered before the reasoning')
  assert.equal(held.provider, null)
  const c = held.decision.challenge
  assert.match(c.id, /^ch_/)
  assert.equal(first.headers.get('x-tollgate-challenge'), c.id)
  assert.match(c.question, /approach|how would you/i, 'the question asks for the sender’s approach')
  assert.equal(c.attempts_left, 3)
  assert.ok(Date.parse(c.expires_at) - Date.now() <= 300_000 + 2000, 'held at most 5 minutes')
  assert.equal(mock.received.length, 0, 'the upstream is not called while the request is held')
  assert.equal(tg.deps.holds.size, 1)

  // A weak reply: feedback, one attempt fewer, still held, still no upstream call.
  const weak = await native(tg, key, `/v1/intercept/${c.id}/reply`, { reply: FAIL })
  assert.equal(weak.status, 200)
  const fb = ((await weak.json()) as any).decision
  assert.equal(fb.outcome, 'challenge')
  assert.equal(fb.challenge.passed, false)
  assert.equal(fb.challenge.attempts_left, 2)
  assert.match(fb.challenge.feedback, /own approach|explain|steps/i)
  assert.ok(fb.challenge.reasoning_score >= 0 && fb.challenge.reasoning_score < 0.5)
  assert.equal(mock.received.length, 0)

  // A reasoned reply: the HELD request (not the reply) goes upstream, once.
  const good = await native(tg, key, `/v1/intercept/${c.id}/reply`, { reply: PASS })
  assert.equal(good.status, 200)
  const done = (await good.json()) as any
  assert.equal(done.decision.outcome, 'allow')
  assert.equal(done.decision.challenge_passed, true)
  assert.ok(done.decision.reasoning_score >= 0.5 && done.decision.reasoning_score <= 1)
  assert.equal(done.output.text, ANSWERS.openai.join(''))
  assert.equal(mock.received.length, 1, 'the upstream was called exactly once')
  assert.ok(upstreamText(mock, 0).includes(PROMPT), 'the held request reached the upstream')
  assert.ok(!upstreamText(mock, 0).includes('two pointers'), 'the reasoning reply is graded, not forwarded')
  assert.equal(tg.deps.holds.size, 0, 'a passed hold is released')

  // Spent: the same id again is 404, and nothing goes upstream.
  const again = await native(tg, key, `/v1/intercept/${c.id}/reply`, { reply: PASS })
  assert.equal(again.status, 404)
  assert.equal(((await again.json()) as any).error.code, 'challenge_not_found')
  assert.equal(mock.received.length, 1)

  // AUDIT-2: every step left a decision record with its labels and codes — never text.
  const rows = await records(tg, keys.org.id)
  assert.deepEqual(rows.map((r) => [r.outcome, r.status, r.friction, r.passed]), [
    ['challenged', 200, 'challenge', null],
    ['challenge_failed', 200, 'challenge', 0],
    ['allowed', 200, 'challenge', 1],
    ['rejected', 404, null, null],
  ])
  assert.equal(rows[0]!.rule_id, null, 'default_action: no rule id')
  assert.ok(rows[0]!.classifier !== null && rows[0]!.classify_ms !== null && rows[0]!.policy_ms !== null)
  assert.ok(rows[1]!.reasoning_score! < 0.5 && rows[2]!.reasoning_score! >= 0.5)
  assert.equal(rows[2]!.provider, 'openai')
  assert.equal(rows[2]!.output_tokens, 8)
  for (const r of rows) assert.ok(!JSON.stringify(r).includes('sorted') && !JSON.stringify(r).includes('pointers'), 'no text in any record')
})

test('GW-5: OpenAI SDK, JSON and streaming — the challenge is an ordinary assistant message; the next user turn is the reply; a pass sends the held request upstream once', async (t) => {
  const { mock, tg, key } = await world(t)
  const openai = new OpenAI({ apiKey: key, baseURL: `${tg.url}/v1`, maxRetries: 0 })
  for (const stream of [false, true]) {
    const before = mock.received.length
    const ask = async (messages: OpenAI.ChatCompletionMessageParam[]) => {
      if (!stream) return (await openai.chat.completions.create({ model: 'gpt-4o', messages })).choices[0]!.message.content ?? ''
      let text = ''
      for await (const chunk of await openai.chat.completions.create({ model: 'gpt-4o', messages, stream: true })) text += chunk.choices[0]?.delta.content ?? ''
      return text
    }
    const question = await ask([{ role: 'user', content: PROMPT }])
    const id = ID.exec(question)?.[1]
    assert.ok(id, `stream=${stream}: the assistant message carries the challenge mark`)
    assert.equal(mock.received.length, before, 'held: no upstream call')
    const weak = await ask([{ role: 'user', content: PROMPT }, { role: 'assistant', content: question }, { role: 'user', content: FAIL }])
    assert.equal(ID.exec(weak)?.[1], id, 'feedback keeps the same challenge')
    assert.match(weak, /own approach/)
    const answer = await ask([{ role: 'user', content: PROMPT }, { role: 'assistant', content: weak }, { role: 'user', content: PASS }])
    assert.equal(answer, ANSWERS.openai.join(''))
    assert.equal(mock.received.length, before + 1, 'exactly one upstream call')
    const sent = upstreamText(mock, before)
    assert.ok(sent.includes(PROMPT) && !sent.includes('two pointers') && !sent.includes('Tollgate challenge'), 'the held request went up as it was held')
    assert.equal(mock.received[before]!.body.stream === true, stream, 'in the reply’s mode')
    // The conversation replayed later: the challenge was answered → 404 in OpenAI's error format.
    await assert.rejects(ask([{ role: 'user', content: PROMPT }, { role: 'assistant', content: question }, { role: 'user', content: PASS }]), (err: any) => err.status === 404 && err.code === 'challenge_not_found')
  }
})

test('GW-5: Anthropic SDK, JSON and streaming, to another provider (Anthropic client → OpenAI upstream and → Anthropic upstream)', async (t) => {
  const { mock, tg, key } = await world(t)
  const anthropic = new Anthropic({ apiKey: key, baseURL: tg.url, maxRetries: 0 })
  for (const [model, provider] of [['claude-sonnet-4-5', 'anthropic'], ['gpt-4o', 'openai']] as const) {
    for (const stream of [false, true]) {
      const before = mock.received.length
      const ask = async (messages: Anthropic.MessageParam[]) => {
        if (!stream) return (await anthropic.messages.create({ model, max_tokens: 64, messages })).content.map((b) => (b.type === 'text' ? b.text : '')).join('')
        let text = ''
        const s = anthropic.messages.stream({ model, max_tokens: 64, messages })
        s.on('text', (d) => (text += d))
        await s.finalMessage()
        return text
      }
      const question = await ask([{ role: 'user', content: PROMPT }])
      const id = ID.exec(question)?.[1]
      assert.ok(id, `${provider}, stream=${stream}: challenge mark present`)
      assert.equal(mock.received.length, before)
      const answer = await ask([{ role: 'user', content: PROMPT }, { role: 'assistant', content: question }, { role: 'user', content: PASS }])
      assert.equal(answer, ANSWERS[provider].join(''))
      assert.equal(mock.received.length, before + 1)
      assert.equal(mock.received[before]!.provider, provider)
      assert.ok(upstreamText(mock, before).includes(PROMPT))
    }
  }
  // Another key cannot answer someone else's challenge (404, Anthropic's error shape).
  const question = (await anthropic.messages.create({ model: 'gpt-4o', max_tokens: 64, messages: [{ role: 'user', content: PROMPT }] })).content.map((b) => (b.type === 'text' ? b.text : '')).join('')
  const other = await orgWithKeys(tg.deps)
  const stranger = new Anthropic({ apiKey: other.production, baseURL: tg.url, maxRetries: 0 })
  await assert.rejects(
    stranger.messages.create({ model: 'gpt-4o', max_tokens: 64, messages: [{ role: 'user', content: PROMPT }, { role: 'assistant', content: question }, { role: 'user', content: PASS }] }),
    (err: any) => err.status === 404 && err.error?.error?.type === 'not_found_error',
  )
})

test('GW-5: out of attempts — the request is dropped after the last failed reply; unknown and malformed ids are 404, a bad reply body is 400, none reach the upstream', async (t) => {
  const { mock, tg, key } = await world(t, ASK_FIRST, { env: { TOLLGATE_CHALLENGE_ATTEMPTS: '2' } })
  const c = ((await (await native(tg, key, '/v1/intercept', { model: 'gpt-4o', prompt: PROMPT })).json()) as any).decision.challenge
  assert.equal(c.attempts_left, 2)
  const r1 = ((await (await native(tg, key, `/v1/intercept/${c.id}/reply`, { reply: FAIL })).json()) as any).decision.challenge
  assert.equal(r1.attempts_left, 1)
  const r2 = ((await (await native(tg, key, `/v1/intercept/${c.id}/reply`, { reply: 'no idea' })).json()) as any).decision.challenge
  assert.equal(r2.attempts_left, 0)
  assert.match(r2.feedback, /dropped/)
  assert.equal(tg.deps.holds.size, 0, 'dropped from memory at once')
  assert.equal((await native(tg, key, `/v1/intercept/${c.id}/reply`, { reply: PASS })).status, 404)
  for (const id of ['ch_unknown', 'ch_AAAAAAAAAAAAAAAAA_abcdef_zzzzzzzz', '..%2f..%2fetc']) {
    const r = await native(tg, key, `/v1/intercept/${id}/reply`, { reply: PASS })
    assert.ok(r.status === 404 || r.status === 421, `${id}: ${r.status}`)
  }
  const c2 = ((await (await native(tg, key, '/v1/intercept', { model: 'gpt-4o', prompt: PROMPT })).json()) as any).decision.challenge
  for (const body of [{}, { reply: '' }, { reply: 42 }, { reply: PASS, extra: 1 }, { reply: PASS, stream: 'yes' }]) {
    const r = await native(tg, key, `/v1/intercept/${c2.id}/reply`, body)
    assert.equal(r.status, 400, JSON.stringify(body))
    const text = await r.text()
    assert.ok(!text.includes('pointers'), 'the reply is never echoed')
  }
  assert.equal(tg.deps.holds.size, 1, 'bad replies do not spend the hold')
  assert.equal(mock.received.length, 0)
})

test('GW-5 TRANSIT-2: an expired hold is dropped by the sweeper — live holds fall to 0 and the held request is garbage-collected; its reply gets 410 in each wire format', async (t) => {
  const clock = new ManualClock()
  const { mock, tg, key, keys } = await world(t, ASK_FIRST, { clock, env: { TOLLGATE_CHALLENGE_TTL_S: '60' } })
  const ids: Record<string, string> = {}
  ids['native'] = ((await (await native(tg, key, '/v1/intercept', { model: 'gpt-4o', prompt: PROMPT })).json()) as any).decision.challenge.id
  const openai = new OpenAI({ apiKey: key, baseURL: `${tg.url}/v1`, maxRetries: 0 })
  const q = (await openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: PROMPT }] })).choices[0]!.message.content!
  const anthropic = new Anthropic({ apiKey: key, baseURL: tg.url, maxRetries: 0 })
  const qa = (await anthropic.messages.create({ model: 'gpt-4o', max_tokens: 64, messages: [{ role: 'user', content: PROMPT }] })).content.map((b) => (b.type === 'text' ? b.text : '')).join('')
  assert.equal(tg.deps.holds.size, 3)

  // Positive control: while held, the held request is reachable (a WeakRef to it still resolves).
  // (Taken in a function of its own: the test must not keep the hold alive itself.)
  const ref = ((): WeakRef<object> => {
    const taken = tg.deps.holds.take(ids['native']!, keys.productionId)
    assert.equal(taken.kind, 'held')
    return new WeakRef(taken.kind === 'held' ? taken.hold.request : {})
  })()
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  // (A deref keeps its target alive until the end of the job: collect first, then look, in each job.)
  const collected = async () => {
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setImmediate(r))
      gc()
      if (ref.deref() === undefined) return true
    }
    return false
  }
  assert.equal(await collected(), false, 'control: while held, the request survives 20 full collections')

  // The TTL passes: the sweeper (every second, on the instance's clock) drops all three.
  clock.advance(60_001)
  const until = Date.now() + 5000
  while (tg.deps.holds.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
  assert.equal(tg.deps.holds.size, 0, 'no live holds after the TTL (without any reply to trigger it)')
  assert.equal(await collected(), true, 'the held request is no longer retained anywhere in the process')

  const late = await native(tg, key, `/v1/intercept/${ids['native']}/reply`, { reply: PASS })
  assert.equal(late.status, 410)
  assert.equal(((await late.json()) as any).error.code, 'challenge_expired')
  await assert.rejects(openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: PROMPT }, { role: 'assistant', content: q }, { role: 'user', content: PASS }] }), (err: any) => err.status === 410 && err.code === 'challenge_expired')
  await assert.rejects(anthropic.messages.create({ model: 'gpt-4o', max_tokens: 64, messages: [{ role: 'user', content: PROMPT }, { role: 'assistant', content: qa }, { role: 'user', content: PASS }] }), (err: any) => err.status === 410)
  assert.equal(mock.received.length, 0, 'nothing expired ever reached the upstream')
})

test('GW-5: several instances — a reply that reaches an instance that does not hold the challenge gets 421 challenge_elsewhere (sticky routing is required), and the holding instance still accepts it', async (t) => {
  const a = await world(t)
  const b = (await startApp(t, { env: upstreamEnv(a.mock), dataDir: a.tg.dataDir }))!
  const c = ((await (await native(a.tg, a.key, '/v1/intercept', { model: 'gpt-4o', prompt: PROMPT })).json()) as any).decision.challenge
  const wrong = await native(b, a.key, `/v1/intercept/${c.id}/reply`, { reply: PASS })
  assert.equal(wrong.status, 421)
  const body = (await wrong.json()) as any
  assert.equal(body.error.code, 'challenge_elsewhere')
  assert.match(body.error.message, /same instance/)
  assert.equal(a.mock.received.length, 0)
  const right = await native(a.tg, a.key, `/v1/intercept/${c.id}/reply`, { reply: PASS })
  assert.equal(right.status, 200)
  assert.equal(a.mock.received.length, 1)
})
