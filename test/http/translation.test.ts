import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { crc32, deflateSync } from 'node:zlib'
import { ANSWERS, startMockUpstream, upstreamEnv, USAGE, UPSTREAM_KEYS, type MockUpstream, type Received } from '../fakes/upstreams.ts'
import { orgWithKeys, startApp, type TestApp } from '../helpers/app.ts'

/**
 * GW-2: cross-format translation, checked where it matters — at the upstream, in the provider's
 * own shape — and back at the client, in the client's shape.
 */

/** A real 2×2 RGBA PNG, built here (signature, IHDR, IDAT, IEND with their CRCs). */
function tinyPng(): string {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4)
    len.writeUInt32BE(data.length)
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data])
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(crc32(body) >>> 0)
    return Buffer.concat([len, body, crc])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(2, 0)
  ihdr.writeUInt32BE(2, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 6 // RGBA
  const rows = Buffer.from([0, 255, 0, 0, 255, 0, 0, 255, 255, 0, 0, 0, 255, 255, 255, 255, 255, 255])
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0)),
  ]).toString('base64')
}

const PNG = tinyPng()
const SYSTEM = 'You are a careful translator of formats.'
const TURN1 = 'First question, turn one.'
const REPLY1 = 'First answer, from the assistant.'
const TURN2 = 'Now look at this picture.'
const STOPS = ['STOP-ONE', 'STOP-TWO']

const MODEL = { anthropic: 'claude-sonnet-4-5', openai: 'gpt-4o', gemini: 'gemini-2.5-flash' } as const
type Upstream = keyof typeof MODEL

function anthropicRequest(model: string, extra: Record<string, unknown> = {}) {
  return {
    model, max_tokens: 77, temperature: 0.25, stop_sequences: STOPS, system: SYSTEM,
    messages: [
      { role: 'user', content: TURN1 },
      { role: 'assistant', content: [{ type: 'text', text: REPLY1 }] },
      { role: 'user', content: [{ type: 'text', text: TURN2 }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } }] },
    ],
    ...extra,
  }
}

function openaiRequest(model: string, extra: Record<string, unknown> = {}) {
  return {
    model, max_tokens: 77, temperature: 0.25, stop: STOPS,
    messages: [
      { role: 'system', content: SYSTEM },
      { role: 'user', content: TURN1 },
      { role: 'assistant', content: REPLY1 },
      { role: 'user', content: [{ type: 'text', text: TURN2 }, { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } }] },
    ],
    ...extra,
  }
}

/** What each provider must receive for the conversation above, in its own shape. */
const EXPECTED_UPSTREAM = {
  openai: (model: string) => ({
    model,
    messages: [
      { role: 'system', content: SYSTEM },
      { role: 'user', content: TURN1 },
      { role: 'assistant', content: REPLY1 },
      { role: 'user', content: [{ type: 'text', text: TURN2 }, { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } }] },
    ],
    max_tokens: 77, temperature: 0.25, stop: STOPS,
  }),
  anthropic: (model: string) => ({
    model, max_tokens: 77, system: SYSTEM, temperature: 0.25, stop_sequences: STOPS,
    messages: [
      { role: 'user', content: [{ type: 'text', text: TURN1 }] },
      { role: 'assistant', content: [{ type: 'text', text: REPLY1 }] },
      { role: 'user', content: [{ type: 'text', text: TURN2 }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } }] },
    ],
  }),
  gemini: () => ({
    contents: [
      { role: 'user', parts: [{ text: TURN1 }] },
      { role: 'model', parts: [{ text: REPLY1 }] },
      { role: 'user', parts: [{ text: TURN2 }, { inlineData: { mimeType: 'image/png', data: PNG } }] },
    ],
    systemInstruction: { parts: [{ text: SYSTEM }] },
    generationConfig: { maxOutputTokens: 77, temperature: 0.25, stopSequences: STOPS },
  }),
}

interface World {
  readonly tg: TestApp
  readonly mock: MockUpstream
  readonly key: string
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; text: string; json: any }>
}

async function world(t: TestContext): Promise<World | undefined> {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const tg = await startApp(t, { env: upstreamEnv(mock) })
  if (!tg) return undefined
  const { production } = await orgWithKeys(tg.deps)
  return {
    tg, mock, key: production,
    async post(path, body, headers = {}) {
      const res = await fetch(tg.url + path, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${production}`, ...headers }, body: JSON.stringify(body) })
      const text = await res.text()
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch {
        json = undefined
      }
      return { status: res.status, headers: res.headers, text, json }
    },
  }
}

function events(text: string): { event: string | undefined; data: any }[] {
  return text.split(/\n\n/).filter((b) => b.trim().length > 0).map((block) => {
    let event: string | undefined
    const data: string[] = []
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7)
      else if (line.startsWith('data: ')) data.push(line.slice(6))
    }
    const d = data.join('\n')
    return { event, data: d === '[DONE]' ? '[DONE]' : JSON.parse(d) }
  })
}

/** The last request the mock received, checked to be the given provider and never to carry the client's Tollgate key. */
function lastUpstream(w: World, provider: Upstream): Received {
  const got = w.mock.received.at(-1)
  assert.ok(got, 'the request reached the upstream')
  assert.equal(got.provider, provider)
  const headerText = JSON.stringify(got.headers)
  assert.ok(!headerText.includes(w.key) && !JSON.stringify(got.body).includes(w.key), 'the client\'s Tollgate key never goes upstream (GW-2)')
  return got
}

function withoutStreamFields(body: Record<string, unknown>) {
  const { stream, stream_options, ...rest } = body
  void stream
  void stream_options
  return rest
}

test('GW-2: Anthropic client → OpenAI and Gemini providers: system, turns, image, max_tokens/temperature/stop in the provider\'s shape; answer in Anthropic shape with usage', async (t) => {
  const w = await world(t)
  if (!w) return
  for (const provider of ['openai', 'gemini'] as const) {
    const model = MODEL[provider]
    const res = await w.post('/v1/messages', anthropicRequest(model))
    assert.equal(res.status, 200, res.text)
    const got = lastUpstream(w, provider)
    if (provider === 'openai') {
      assert.equal(got.path, '/v1/chat/completions')
      assert.deepEqual(got.body, EXPECTED_UPSTREAM.openai(model))
      assert.equal(got.headers['authorization'], `Bearer ${UPSTREAM_KEYS.openai}`)
    } else {
      assert.equal(got.path, `/v1beta/models/${model}:generateContent`)
      assert.deepEqual(got.body, EXPECTED_UPSTREAM.gemini())
      assert.equal(got.headers['x-goog-api-key'], UPSTREAM_KEYS.gemini)
    }
    const [input, output] = USAGE[provider]
    assert.deepEqual(res.json, {
      id: res.json.id, type: 'message', role: 'assistant', model,
      content: [{ type: 'text', text: ANSWERS[provider].join('') }],
      stop_reason: 'end_turn', stop_sequence: null,
      usage: { input_tokens: input, output_tokens: output },
    })
    assert.match(res.json.id, /^msg_/)

    // Streaming: the same request body upstream (plus the provider's stream switch), Anthropic events back.
    const s = await w.post('/v1/messages', anthropicRequest(model, { stream: true }))
    assert.equal(s.status, 200, s.text)
    assert.match(s.headers.get('content-type') ?? '', /^text\/event-stream/)
    const up = lastUpstream(w, provider)
    if (provider === 'openai') {
      assert.deepEqual(withoutStreamFields(up.body), EXPECTED_UPSTREAM.openai(model))
      assert.equal(up.body.stream, true)
    } else {
      assert.equal(up.path, `/v1beta/models/${model}:streamGenerateContent`)
      assert.deepEqual(up.body, EXPECTED_UPSTREAM.gemini())
    }
    const evs = events(s.text)
    for (const e of evs) assert.equal(e.event, e.data.type, 'every event is named like its type, as Anthropic sends them')
    const names = evs.map((e) => e.event)
    assert.equal(names[0], 'message_start')
    assert.equal(names[1], 'content_block_start')
    assert.deepEqual(names.slice(-3), ['content_block_stop', 'message_delta', 'message_stop'])
    assert.ok(names.slice(2, -3).every((n) => n === 'content_block_delta'))
    const text = evs.filter((e) => e.event === 'content_block_delta').map((e) => e.data.delta.text).join('')
    assert.equal(text, ANSWERS[provider].join(''))
    const delta = evs.find((e) => e.event === 'message_delta')!.data
    assert.equal(delta.delta.stop_reason, 'end_turn')
    assert.deepEqual(delta.usage, { input_tokens: input, output_tokens: output })
  }
})

test('GW-2: OpenAI client → Anthropic and Gemini providers: system, turns, image, max_tokens/temperature/stop in the provider\'s shape; answer in OpenAI shape with usage', async (t) => {
  const w = await world(t)
  if (!w) return
  for (const provider of ['anthropic', 'gemini'] as const) {
    const model = MODEL[provider]
    const res = await w.post('/v1/chat/completions', openaiRequest(model))
    assert.equal(res.status, 200, res.text)
    const got = lastUpstream(w, provider)
    if (provider === 'anthropic') {
      assert.equal(got.path, '/v1/messages')
      assert.deepEqual(withoutStreamFields(got.body), EXPECTED_UPSTREAM.anthropic(model))
      assert.notEqual(got.body.stream, true)
      assert.equal(got.headers['x-api-key'], UPSTREAM_KEYS.anthropic)
      assert.equal(got.headers['anthropic-version'], '2023-06-01')
    } else {
      assert.equal(got.path, `/v1beta/models/${model}:generateContent`)
      assert.deepEqual(got.body, EXPECTED_UPSTREAM.gemini())
    }
    const [input, output] = USAGE[provider]
    assert.equal(res.json.object, 'chat.completion')
    assert.equal(res.json.model, model)
    assert.match(res.json.id, /^chatcmpl-/)
    assert.deepEqual(res.json.choices, [{ index: 0, message: { role: 'assistant', content: ANSWERS[provider].join(''), refusal: null }, logprobs: null, finish_reason: 'stop' }])
    assert.deepEqual(res.json.usage, { prompt_tokens: input, completion_tokens: output, total_tokens: input + output })

    // max_completion_tokens is the newer name of the same limit.
    const { max_tokens, ...noMax } = openaiRequest(model)
    void max_tokens
    assert.equal((await w.post('/v1/chat/completions', { ...noMax, max_completion_tokens: 77 })).status, 200)
    const limit: Record<string, any> = lastUpstream(w, provider).body
    if (provider === 'anthropic') assert.equal(limit.max_tokens, 77)
    else assert.equal(limit.generationConfig.maxOutputTokens, 77)

    // Streaming with usage asked for: OpenAI chunks back, the usage chunk last before [DONE].
    for (const includeUsage of [true, false]) {
      const s = await w.post('/v1/chat/completions', openaiRequest(model, { stream: true, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) }))
      assert.equal(s.status, 200, s.text)
      const up = lastUpstream(w, provider)
      if (provider === 'anthropic') assert.deepEqual(up.body, { ...EXPECTED_UPSTREAM.anthropic(model), stream: true })
      else assert.deepEqual(up.body, EXPECTED_UPSTREAM.gemini())
      const evs = events(s.text)
      assert.equal(evs.at(-1)!.data, '[DONE]')
      const chunks = evs.slice(0, -1).map((e) => e.data)
      for (const c of chunks) {
        assert.equal(c.object, 'chat.completion.chunk')
        assert.equal(c.model, model)
      }
      assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), ANSWERS[provider].join(''))
      assert.equal(chunks.map((c) => c.choices[0]?.finish_reason).filter(Boolean).join(), 'stop')
      const usageChunks = chunks.filter((c) => 'usage' in c)
      if (includeUsage) {
        assert.equal(usageChunks.length, 1)
        assert.equal(chunks.at(-1), usageChunks[0], 'the usage chunk is last')
        assert.deepEqual(usageChunks[0].usage, { prompt_tokens: input, completion_tokens: output, total_tokens: input + output })
        assert.deepEqual(usageChunks[0].choices, [])
      } else assert.equal(usageChunks.length, 0, 'a client that did not ask never sees a usage chunk')
    }
  }
  await w.tg.deps.decisions.drain()
  const rows = await w.tg.deps.db.db.selectFrom('decision').selectAll().execute()
  for (const r of rows) {
    assert.equal(r.outcome, 'allowed')
    assert.ok(r.input_tokens !== null && r.output_tokens !== null, 'usage mapped into the decision record')
    assert.equal(r.attachment_count, 1)
    assert.equal(r.attachment_types, 'image/png')
  }
})

test('GW-2: OpenAI streaming always asks the upstream for usage; a client that did not ask never sees a usage chunk, the record still has tokens', async (t) => {
  const w = await world(t)
  if (!w) return
  const body = { model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'count tokens please' }] }
  for (const includeUsage of [false, true]) {
    const s = await w.post('/v1/chat/completions', { ...body, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) })
    assert.equal(s.status, 200, s.text)
    const up = lastUpstream(w, 'openai')
    assert.equal(up.body.stream, true)
    assert.deepEqual(up.body.stream_options, { include_usage: true }, 'Tollgate always asks for usage')
    const chunks = events(s.text).filter((e) => e.data !== '[DONE]').map((e) => e.data)
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), ANSWERS.openai.join(''))
    const usage = chunks.filter((c) => c.usage)
    if (includeUsage) assert.deepEqual(usage.map((c) => c.usage), [{ prompt_tokens: USAGE.openai[0], completion_tokens: USAGE.openai[1], total_tokens: USAGE.openai[0] + USAGE.openai[1] }])
    else assert.equal(usage.length, 0, 'no usage chunk for a client that did not ask')
    assert.equal(events(s.text).at(-1)!.data, '[DONE]')
  }
  await w.tg.deps.decisions.drain()
  const rows = await w.tg.deps.db.db.selectFrom('decision').select(['input_tokens', 'output_tokens', 'stream']).execute()
  assert.equal(rows.length, 2)
  for (const r of rows) assert.deepEqual(r, { input_tokens: USAGE.openai[0], output_tokens: USAGE.openai[1], stream: 1 })
})

test('GW-2: same-format passthrough keeps unknown fields (metadata, new parameters) on their way upstream; translation drops them', async (t) => {
  const w = await world(t)
  if (!w) return
  const anthropicExtra = { metadata: { user_id: 'user-42' }, top_k: 5, service_tier: 'auto', some_future_param: { nested: [1, 2, 3] } }
  let res = await w.post('/v1/messages', anthropicRequest(MODEL.anthropic, anthropicExtra), { 'anthropic-beta': 'future-feature-2099-01-01', 'anthropic-version': '2023-06-01' })
  assert.equal(res.status, 200, res.text)
  let got = lastUpstream(w, 'anthropic')
  assert.deepEqual(withoutStreamFields(got.body), anthropicRequest(MODEL.anthropic, anthropicExtra), 'the Anthropic body reaches Anthropic unchanged')
  assert.equal(got.headers['anthropic-beta'], 'future-feature-2099-01-01')
  // Passthrough answers are the provider's own bytes.
  assert.equal(res.json.id, 'msg_mock')

  const openaiExtra = { metadata: { tag: 'x' }, seed: 7, user: 'user-42', logit_bias: { '50256': -100 }, response_format: { type: 'text' }, some_future_param: true }
  res = await w.post('/v1/chat/completions', openaiRequest(MODEL.openai, openaiExtra))
  assert.equal(res.status, 200, res.text)
  got = lastUpstream(w, 'openai')
  assert.deepEqual(got.body, openaiRequest(MODEL.openai, openaiExtra), 'the OpenAI body reaches OpenAI unchanged')
  assert.equal(res.json.id, 'chatcmpl-mock')

  // Across formats only the modelled fields travel: unknown ones do not leak into another API.
  assert.equal((await w.post('/v1/messages', anthropicRequest(MODEL.gemini, anthropicExtra))).status, 200)
  assert.deepEqual(lastUpstream(w, 'gemini').body, EXPECTED_UPSTREAM.gemini())
  assert.equal((await w.post('/v1/chat/completions', openaiRequest(MODEL.anthropic, openaiExtra))).status, 200)
  assert.deepEqual(withoutStreamFields(lastUpstream(w, 'anthropic').body), EXPECTED_UPSTREAM.anthropic(MODEL.anthropic))
})

test('GW-2: tool definitions pass through unchanged to a same-format provider and are refused with 400 not_translatable otherwise', async (t) => {
  const w = await world(t)
  if (!w) return
  const anthropicTools = {
    tools: [{ name: 'get_weather', description: 'Weather for a city', input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }],
    tool_choice: { type: 'auto' },
  }
  const openaiTools = {
    tools: [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }, strict: true } }],
    tool_choice: 'auto',
  }
  const toolTurnAnthropic = {
    model: MODEL.anthropic, max_tokens: 50,
    messages: [
      { role: 'user', content: 'weather?' },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Oslo' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'rainy' }] },
    ],
  }
  const toolTurnOpenai = {
    model: MODEL.openai,
    messages: [
      { role: 'user', content: 'weather?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'rainy' },
    ],
  }

  // Same format: unchanged.
  for (const [path, body, provider] of [
    ['/v1/messages', anthropicRequest(MODEL.anthropic, anthropicTools), 'anthropic'],
    ['/v1/messages', toolTurnAnthropic, 'anthropic'],
    ['/v1/chat/completions', openaiRequest(MODEL.openai, openaiTools), 'openai'],
    ['/v1/chat/completions', toolTurnOpenai, 'openai'],
  ] as const) {
    const res = await w.post(path, body)
    assert.equal(res.status, 200, res.text)
    // (A JSON call may add the provider's own `stream: false`; nothing else changes.)
    assert.deepEqual(withoutStreamFields(lastUpstream(w, provider).body), body)
  }

  // Other formats: refused before anything goes upstream.
  const before = w.mock.received.length
  const refused: [string, Record<string, unknown>][] = [
    ['/v1/messages', anthropicRequest(MODEL.openai, anthropicTools)],
    ['/v1/messages', anthropicRequest(MODEL.gemini, anthropicTools)],
    ['/v1/messages', { ...toolTurnAnthropic, model: MODEL.openai }],
    ['/v1/messages', { ...toolTurnAnthropic, model: MODEL.gemini }],
    ['/v1/chat/completions', openaiRequest(MODEL.anthropic, openaiTools)],
    ['/v1/chat/completions', openaiRequest(MODEL.gemini, openaiTools)],
    ['/v1/chat/completions', { ...toolTurnOpenai, model: MODEL.anthropic }],
    ['/v1/chat/completions', { ...toolTurnOpenai, model: MODEL.gemini }],
    ['/v1/chat/completions', openaiRequest(MODEL.anthropic, { n: 3 })],
  ]
  for (const [path, body] of refused) {
    const res = await w.post(path, body)
    assert.equal(res.status, 400, res.text)
    if (path === '/v1/messages') {
      assert.equal(res.json.type, 'error')
      assert.equal(res.json.error.type, 'invalid_request_error')
    } else {
      assert.equal(res.json.error.code, 'not_translatable')
      assert.equal(res.json.error.type, 'invalid_request_error')
    }
    assert.ok(!res.text.includes('get_weather'), 'the refusal does not echo the tool')
  }
  assert.equal(w.mock.received.length, before, 'nothing went upstream')
  await w.tg.deps.decisions.drain()
  const rows = await w.tg.deps.db.db.selectFrom('decision').select(['outcome', 'error_code', 'status']).where('error_code', '=', 'not_translatable').execute()
  assert.equal(rows.length, refused.length)
  for (const r of rows) assert.deepEqual(r, { outcome: 'rejected', error_code: 'not_translatable', status: 400 })
})
