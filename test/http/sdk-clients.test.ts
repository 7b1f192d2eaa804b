import assert from 'node:assert/strict'
import { test } from 'node:test'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { orgWithKeys, startApp } from '../helpers/app.ts'
import { ANSWERS, startMockUpstream, upstreamEnv, USAGE } from '../fakes/upstreams.ts'

const PROVIDERS = [
  { model: 'claude-sonnet-4-5', provider: 'anthropic' },
  { model: 'gpt-4o', provider: 'openai' },
  { model: 'gemini-2.5-flash', provider: 'gemini' },
  { model: 'local-echo', provider: 'local' },
] as const

const SYSTEM = 'You are terse.'
const PROMPT = 'Name three primes.'

test('GW-1 GW-2: the official Anthropic and OpenAI SDKs work unchanged through every provider, JSON and streaming', async (t) => {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const tg = await startApp(t, { env: upstreamEnv(mock) })
  if (!tg) return
  const { production } = await orgWithKeys(tg.deps)
  const anthropic = new Anthropic({ apiKey: production, baseURL: tg.url, maxRetries: 0 })
  const openai = new OpenAI({ apiKey: production, baseURL: `${tg.url}/v1`, maxRetries: 0 })

  for (const { model, provider } of PROVIDERS) {
    const expected = provider === 'local' ? undefined : ANSWERS[provider].join('')
    const usage = provider === 'local' ? undefined : USAGE[provider]

    const checkUpstream = (stream: boolean) => {
      if (provider === 'local') return
      const got = mock.received.at(-1)!
      assert.equal(got.provider, provider)
      const text = JSON.stringify(got.body)
      assert.ok(text.includes(PROMPT), 'the prompt reached the upstream in its own format')
      assert.ok(text.includes(SYSTEM), 'the system prompt reached the upstream in its own format')
      if (provider !== 'gemini') assert.equal(got.body.stream === true, stream)
      else assert.equal(got.path.endsWith(':streamGenerateContent'), stream)
    }

    await t.test(`Anthropic SDK → ${provider}, JSON`, async () => {
      const msg = await anthropic.messages.create({ model, max_tokens: 64, system: SYSTEM, messages: [{ role: 'user', content: PROMPT }] })
      const text = msg.content.map((b) => (b.type === 'text' ? b.text : '')).join('')
      if (expected) assert.equal(text, expected)
      else assert.match(text, /built-in local provider/)
      if (usage) assert.deepEqual([msg.usage.input_tokens, msg.usage.output_tokens], [...usage])
      assert.equal(msg.stop_reason, 'end_turn')
      checkUpstream(false)
    })

    await t.test(`Anthropic SDK → ${provider}, streaming`, async () => {
      const stream = anthropic.messages.stream({ model, max_tokens: 64, system: SYSTEM, messages: [{ role: 'user', content: PROMPT }] })
      let text = ''
      stream.on('text', (d) => (text += d))
      const final = await stream.finalMessage()
      if (expected) assert.equal(text, expected)
      else assert.match(text, /built-in local provider/)
      if (usage) assert.equal(final.usage.output_tokens, usage[1])
      assert.equal(final.stop_reason, 'end_turn')
      checkUpstream(true)
    })

    await t.test(`OpenAI SDK → ${provider}, JSON`, async () => {
      const res = await openai.chat.completions.create({ model, messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: PROMPT }] })
      const text = res.choices[0]!.message.content ?? ''
      if (expected) assert.equal(text, expected)
      else assert.match(text, /built-in local provider/)
      if (usage) assert.deepEqual([res.usage?.prompt_tokens, res.usage?.completion_tokens], [...usage])
      assert.equal(res.choices[0]!.finish_reason, 'stop')
      checkUpstream(false)
    })

    await t.test(`OpenAI SDK → ${provider}, streaming`, async () => {
      const stream = await openai.chat.completions.create({ model, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: PROMPT }] })
      let text = ''
      let finish: string | null = null
      let completionTokens: number | undefined
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? ''
        finish = chunk.choices[0]?.finish_reason ?? finish
        if (chunk.usage) completionTokens = chunk.usage.completion_tokens
      }
      if (expected) assert.equal(text, expected)
      else assert.match(text, /built-in local provider/)
      assert.equal(finish, 'stop')
      if (usage) assert.equal(completionTokens, usage[1])
      checkUpstream(true)
    })
  }

  await t.test('GW-1: every answered request left one decision record with provider, tokens and outcome', async () => {
    await tg.deps.decisions.drain()
    const rows = await tg.deps.db.db.selectFrom('decision').selectAll().orderBy('created_at').execute()
    assert.equal(rows.length, PROVIDERS.length * 4)
    for (const r of rows) {
      assert.equal(r.outcome, 'allowed')
      assert.equal(r.status, 200)
      assert.ok(r.input_tokens !== null && r.output_tokens !== null, 'token counts recorded')
    }
    assert.deepEqual(new Set(rows.map((r) => r.provider)), new Set(['anthropic', 'openai', 'gemini', 'local']))
  })

  await t.test('GW-1: /v1/models lists models for both SDKs', async () => {
    const ids = []
    for await (const m of openai.models.list()) ids.push(m.id)
    assert.ok(ids.includes('gpt-4o') && ids.includes('claude-sonnet-4-5'))
    const page = await anthropic.models.list()
    assert.ok(page.data.some((m) => m.id === 'claude-sonnet-4-5'))
  })
})
