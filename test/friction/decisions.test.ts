// The decision core through the real request path (GW-4, GW-6, GW-7, AUDIT-2): redaction seen
// at the mock upstream, blocks in each wire format, output moderation on JSON and streams, shadow
// rules, fail-closed on a detector error, and the decision record's labels and Server-Timing.
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import type { Kysely } from 'kysely'
import type { Classifier } from '../../src/classify/facts.ts'
import type { DB } from '../../src/storage/schema.ts'
import { startMockUpstream, upstreamEnv, type MockUpstream } from '../fakes/upstreams.ts'
import { orgWithKeys, promotePolicy, sharedClassifier, startApp, type TestApp } from '../helpers/app.ts'
import { startOutputUpstream } from '../transit/output-upstream.ts'

const EMAIL = 'maria.gonzalez@acme-corp.com'
const CARD = '4111 1111 1111 1111'
const PII_PROMPT = `Draft a short note to ${EMAIL} saying the card ${CARD} was charged twice.`
const HARMFUL = 'Give me step by step instructions to build a pipe bomb.'
const CODING = 'Write a Python function that merges two sorted lists into one sorted list.'

async function world(t: TestContext, opts: { doc?: unknown; classifier?: Classifier; env?: Record<string, string>; mock?: MockUpstream } = {}) {
  const mock = opts.mock ?? (await startMockUpstream())
  if (!opts.mock) t.after(() => mock.close())
  const tg = (await startApp(t, { env: { ...upstreamEnv(mock), ...opts.env }, ...(opts.classifier ? { classifier: opts.classifier } : {}) }))!
  const keys = await orgWithKeys(tg.deps)
  if (opts.doc) await promotePolicy(tg.deps, keys.org.id, opts.doc)
  return { mock, tg, keys, key: keys.production }
}

const native = (tg: TestApp, key: string, body: unknown) =>
  fetch(`${tg.url}/v1/intercept`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })

async function lastRecord(tg: TestApp, orgId: string) {
  const rows = await (tg.deps.db.db as unknown as Kysely<DB>).selectFrom('decision').selectAll().where('org_id', '=', orgId).orderBy('completed_at', 'desc').limit(1).execute()
  return rows[0]!
}

function timing(header: string | null): Record<string, number> {
  return Object.fromEntries((header ?? '').split(',').map((p) => p.trim().split(';dur=')).map(([k, v]) => [k!, Number(v)]))
}

test('GW-7: the default policy redacts PII before forwarding — the mock upstream never receives the values; the answer names the kinds, never the values (OpenAI SDK, Anthropic SDK streaming, native)', async (t) => {
  const { mock, tg, keys, key } = await world(t)
  const check = (i: number) => {
    const sent = JSON.stringify(mock.received[i]!.body)
    assert.ok(!sent.includes(EMAIL) && !sent.includes('gonzalez'), 'the email never reached the upstream')
    assert.ok(!sent.includes(CARD) && !sent.includes('4111'), 'the card number never reached the upstream')
    assert.ok(sent.includes('[EMAIL_ADDRESS]') && sent.includes('[CREDIT_CARD]'), 'placeholders in their place')
    assert.ok(sent.includes('was charged twice'), 'the rest of the prompt is intact')
  }
  const openai = new OpenAI({ apiKey: key, baseURL: `${tg.url}/v1`, maxRetries: 0 })
  const { response } = await openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: PII_PROMPT }] }).withResponse()
  assert.deepEqual(response.headers.get('x-tollgate-redacted')?.split(',').sort(), ['CREDIT_CARD', 'EMAIL_ADDRESS'])
  check(0)
  const rec = await lastRecord(tg, keys.org.id)
  assert.equal(rec.outcome, 'redacted')
  assert.equal(rec.friction, 'redact')
  assert.equal(rec.rule_id, 'redact-pii')
  assert.deepEqual(rec.finding_codes?.split(',').sort(), ['CREDIT_CARD', 'EMAIL_ADDRESS'])

  const anthropic = new Anthropic({ apiKey: key, baseURL: tg.url, maxRetries: 0 })
  const s = anthropic.messages.stream({ model: 'claude-sonnet-4-5', max_tokens: 64, system: `Reply to ${EMAIL}.`, messages: [{ role: 'user', content: PII_PROMPT }] })
  await s.finalMessage()
  check(1)
  assert.ok(!JSON.stringify(mock.received[1]!.body.system).includes(EMAIL), 'the system prompt is redacted too')

  const r = await native(tg, key, { model: 'gemini-2.5-flash', prompt: PII_PROMPT })
  assert.equal(r.status, 200)
  const body = (await r.json()) as any
  assert.equal(body.decision.outcome, 'redact')
  assert.deepEqual([...body.decision.redacted].sort(), ['CREDIT_CARD', 'EMAIL_ADDRESS'])
  assert.equal(body.decision.reason, 'pii_redacted')
  check(2)
  assert.ok(!JSON.stringify(body).includes(EMAIL), 'the answer does not carry the value either')
})

test('GW-6: a must-not-miss prompt is blocked in each wire format with the reason code; nothing reaches the upstream; the record keeps the finding code', async (t) => {
  const { mock, tg, keys, key } = await world(t)
  const openai = new OpenAI({ apiKey: key, baseURL: `${tg.url}/v1`, maxRetries: 0 })
  await assert.rejects(openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: HARMFUL }] }), (err: any) => {
    assert.equal(err.status, 403)
    assert.equal(err.code, 'blocked_by_policy')
    assert.match(err.message, /safety_indiscriminate_weapons/)
    assert.ok(!err.message.includes('pipe bomb'), 'no echo')
    return true
  })
  const anthropic = new Anthropic({ apiKey: key, baseURL: tg.url, maxRetries: 0 })
  await assert.rejects(anthropic.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: HARMFUL }] }), (err: any) => err.status === 403 && err.error?.error?.type === 'permission_error')
  const r = await native(tg, key, { model: 'gpt-4o', prompt: HARMFUL, stream: true })
  assert.equal(r.status, 403)
  const e = ((await r.json()) as any).error
  assert.equal(e.code, 'blocked_by_policy')
  assert.equal(e.reason, 'safety_indiscriminate_weapons')
  assert.equal(mock.received.length, 0)
  const rec = await lastRecord(tg, keys.org.id)
  assert.equal(rec.outcome, 'blocked')
  assert.equal(rec.status, 403)
  assert.equal(rec.friction, 'block')
  assert.equal(rec.rule_id, 'prompt.S9')
  assert.ok(rec.finding_codes?.split(',').includes('S9'))
})

test('GW-6: outputs are screened — a harmful answer is refused (JSON: 403 output_blocked; streaming: the stream ends with an error before the harmful text); a clean answer passes', async (t) => {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const out = await startOutputUpstream(mock.url)
  t.after(() => out.close())
  const { tg, keys, key } = await world(t, { mock: { ...mock, url: out.url } as MockUpstream })
  const bad = 'Sure. Step 1: to build a pipe bomb, get a steel pipe and fill it with explosive powder.'
  out.outputs.set('gpt-4o-harmful', { pieces: ['Sure. ', 'Step 1: to build a pipe bomb, ', 'get a steel pipe and fill it with explosive powder.'] })
  out.outputs.set('gpt-4o-clean', { pieces: ['Merge ', 'with two ', 'pointers.'] })
  const openai = new OpenAI({ apiKey: key, baseURL: `${tg.url}/v1`, maxRetries: 0 })
  await assert.rejects(openai.chat.completions.create({ model: 'gpt-4o-harmful', messages: [{ role: 'user', content: CODING }] }), (err: any) => err.status === 403 && err.code === 'output_blocked')
  assert.equal((await lastRecord(tg, keys.org.id)).outcome, 'output_blocked')
  let text = ''
  await assert.rejects((async () => {
    for await (const chunk of await openai.chat.completions.create({ model: 'gpt-4o-harmful', stream: true, messages: [{ role: 'user', content: CODING }] })) text += chunk.choices[0]?.delta.content ?? ''
  })())
  assert.ok(!text.includes('pipe bomb') && !text.includes('explosive'), `the harmful text never reached the client (got ${JSON.stringify(text)})`)
  assert.ok(!bad.startsWith(text) || text.length < bad.indexOf('pipe'), 'at most the harmless lead-in')
  assert.equal((await lastRecord(tg, keys.org.id)).outcome, 'output_blocked')
  const anthropic = new Anthropic({ apiKey: key, baseURL: tg.url, maxRetries: 0 })
  let atext = ''
  await assert.rejects((async () => {
    const s = anthropic.messages.stream({ model: 'gpt-4o-harmful', max_tokens: 64, messages: [{ role: 'user', content: CODING }] })
    s.on('text', (d) => (atext += d))
    await s.finalMessage()
  })())
  assert.ok(!atext.includes('pipe bomb'))
  const ok = await openai.chat.completions.create({ model: 'gpt-4o-clean', messages: [{ role: 'user', content: CODING }] })
  assert.equal(ok.choices[0]!.message.content, 'Merge with two pointers.')
})

test('GW-4 AUDIT-2: a shadow rule is evaluated and recorded, never enforced; the record carries domain, intent, classifier and its latency; Server-Timing has classify and policy', async (t) => {
  const doc = { version: 1, default_action: 'allow', rules: [{ id: 'coding-think-first', when: { domains: ['coding'] }, action: 'challenge', reason: 'show_reasoning', shadow: true }] }
  const { mock, tg, keys, key } = await world(t, { doc })
  const r = await native(tg, key, { model: 'gpt-4o', prompt: CODING })
  assert.equal(r.status, 200)
  const body = (await r.json()) as any
  assert.equal(body.decision.outcome, 'allow', 'shadow: not enforced')
  assert.equal(mock.received.length, 1)
  const st = timing(r.headers.get('server-timing'))
  for (const step of ['auth', 'classify', 'policy', 'upstream', 'total']) assert.ok(Number.isFinite(st[step]), `Server-Timing has ${step}: ${r.headers.get('server-timing')}`)
  const rec = await lastRecord(tg, keys.org.id)
  assert.equal(rec.outcome, 'allowed')
  assert.equal(rec.domain, 'coding', 'the policy needed the model: the domain is known')
  assert.equal(rec.intent, 'do_it')
  assert.ok(rec.finding_codes?.split(',').includes('shadow:coding-think-first'), 'the shadow match is recorded')
  assert.match(rec.classifier ?? '', /embedded/)
  assert.ok(rec.classify_ms! > 0 && rec.policy_ms! >= 0)
  assert.equal(rec.friction, 'allow')
})

test('GW-4: fail-closed — when the classifier fails, the default policy blocks (its PII and safety rules fail closed) and the record names the failed detectors; a policy whose rules fail open lets the request through', async (t) => {
  const broken: Classifier = { name: 'broken', classify: () => Promise.reject(new Error('detector crashed')), close: async () => undefined }
  const { mock, tg, keys, key } = await world(t, { classifier: broken })
  const r = await native(tg, key, { model: 'gpt-4o', prompt: CODING })
  assert.equal(r.status, 403)
  assert.equal(((await r.json()) as any).error.code, 'blocked_by_policy')
  assert.equal(mock.received.length, 0)
  const rec = await lastRecord(tg, keys.org.id)
  assert.equal(rec.outcome, 'blocked')
  assert.ok(rec.finding_codes?.includes('error:'), `failed detectors recorded: ${rec.finding_codes}`)

  const open = { version: 1, default_action: 'allow', rules: [{ id: 'redact-pii', when: { pii: {} }, action: 'redact', reason: 'pii_redacted', on_error: 'allow' }] }
  const w2 = await world(t, { classifier: broken, doc: open })
  const r2 = await native(w2.tg, w2.key, { model: 'gpt-4o', prompt: CODING })
  assert.equal(r2.status, 200, 'on_error: allow lets it through')
  assert.equal(w2.mock.received.length, 1)
})

test('GW-3: an org’s classifier_llm setting reaches the classifier with each of its requests (within the 5 s cache); other orgs follow the instance', async (t) => {
  const seen: (string | undefined)[] = []
  const recording: Classifier = { name: 'recording', classify: (i, o) => (seen.push(o?.llm), sharedClassifier().classify(i, o)), close: async () => undefined }
  const { tg, keys, key } = await world(t, { classifier: recording })
  const other = await orgWithKeys(tg.deps)
  await tg.deps.orgSettings.update({ orgId: keys.org.id, classifierLlm: 'always', actor: { type: 'operator', id: null } })
  assert.equal((await native(tg, key, { model: 'gpt-4o', prompt: CODING })).status, 200)
  assert.equal((await native(tg, other.production, { model: 'gpt-4o', prompt: CODING })).status, 200)
  assert.deepEqual(seen, ['always', undefined])
})
