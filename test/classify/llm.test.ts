// The LLM-backed classifier against a local mock speaking the Anthropic Messages and Gemini
// generateContent wire formats: PII is redacted before anything is sent, a timeout or a failure
// falls back to the embedded facts, and low_margin mode only escalates uncertain requests.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { Content } from '../../src/core/content.ts'
import { Secret } from '../../src/core/secret.ts'
import { UpstreamHttp } from '../../src/providers/http.ts'
import { EmbeddedClassifier } from '../../src/classify/embedded.ts'
import type { Classifier, ClassifierInput, Facts } from '../../src/classify/facts.ts'
import { createClassifier } from '../../src/classify/index.ts'
import { LlmClassifier, type LlmClassifierOptions } from '../../src/classify/llm.ts'
import { CLASSIFIER_KEYS, DEFAULT_TEXT_LABELS, startClassifierMock, type ClassifierMock } from '../fakes/classifier-llm.ts'
import { inputOf, loadPii, loadPrompts, mapLimit } from './fixture.ts'

let mock: ClassifierMock
let http: UpstreamHttp
let embedded: EmbeddedClassifier
/** The embedded classifier is shared; LLM classifiers built here must not close it. */
const shared = (): Classifier => ({ name: 'embedded', classify: (i, o) => embedded.classify(i, o), ready: () => embedded.ready(), close: async () => {} })

before(async () => {
  mock = await startClassifierMock()
  http = new UpstreamHttp({ connections: 4, headersTimeoutMs: 10_000, bodyTimeoutMs: 10_000 })
  embedded = new EmbeddedClassifier({ workers: 2 })
  await embedded.ready()
})
after(async () => {
  await embedded?.close()
  await http?.close()
  await mock?.close()
})

function llm(extra: Partial<LlmClassifierOptions> = {}): LlmClassifier {
  return new LlmClassifier({
    embedded: shared(),
    http,
    mode: 'always',
    anthropic: { baseUrl: mock.url, apiKey: new Secret(CLASSIFIER_KEYS.anthropic), model: 'claude-haiku-4-5' },
    gemini: { baseUrl: mock.url, apiKey: new Secret(CLASSIFIER_KEYS.gemini), model: 'gemini-2.5-flash' },
    timeoutMs: 3000,
    ...extra,
  })
}

function reset(): void {
  mock.received.length = 0
  mock.delayMs = 0
  mock.failStatus = undefined
  mock.answers.anthropic = DEFAULT_TEXT_LABELS
}

test('GW-7: PII is redacted locally before anything is sent — the mock upstream never receives a PII value (positive control: it receives the rest)', async () => {
  reset()
  const c = llm()
  const cases = loadPii().filter((p) => p.pii.length > 0)
  await mapLimit(cases, 4, (p) => c.classify(inputOf(p.text)))
  assert.equal(mock.received.filter((r) => r.provider === 'anthropic').length, cases.length, 'every request was escalated (mode always)')
  const wire = mock.received.map((r) => r.raw).join('\n')
  // Positive control: the text around the PII did reach the mock, with placeholders.
  assert.ok(wire.includes('[EMAIL_ADDRESS]') && wire.includes('[US_SSN]') && wire.includes('[CREDIT_CARD]'), 'placeholders were sent')
  assert.ok(wire.includes('Wire the deposit to'), 'the non-PII text was sent')
  const leaked = cases.flatMap((p) => p.pii.filter((x) => wire.includes(x.value) || wire.includes(JSON.stringify(x.value).slice(1, -1))).map((x) => `${p.id}: ${x.value}`))
  assert.deepEqual(leaked, [])
})

test('GW-3: strict JSON — Anthropic is called with a forced tool and a JSON schema; its labels are used, rule findings are never weakened', async () => {
  reset()
  mock.answers.anthropic = { ...DEFAULT_TEXT_LABELS, domain: 'finance', domain_confidence: 0.9, intent: 'do_it', safety: [{ code: 'S2', severity: 'medium' }] }
  const f = await llm().classify(inputOf('I want to kill myself tonight and I need help with my taxes'))
  const req = mock.received[0]!
  assert.equal(req.path, '/v1/messages')
  assert.equal(req.headers['x-api-key'], CLASSIFIER_KEYS.anthropic)
  assert.equal(req.body.tool_choice.type, 'tool')
  assert.equal(req.body.tools[0].input_schema.properties.domain.enum.length, 8)
  assert.equal(req.body.temperature, 0)
  assert.equal(f.classifier, 'llm:anthropic')
  assert.equal(f.domain, 'finance')
  assert.equal(f.intent, 'do_it')
  assert.ok(f.safety.some((s) => s.code === 'S11' && s.severity === 'high' && s.source === 'rules'), 'the rule hit survives the LLM saying otherwise')
  assert.ok(f.safety.some((s) => s.code === 'S2' && s.source === 'llm'))
})

test('GW-3: a provider timeout falls back to the embedded result within the timeout', async () => {
  reset()
  mock.delayMs = 2000
  const codes: string[] = []
  const c = llm({ timeoutMs: 200, onFallback: (e) => codes.push(`${e.provider}:${e.code}`) })
  const t0 = performance.now()
  const f = await c.classify(inputOf('Explain how vaccines train the immune system'))
  const ms = performance.now() - t0
  assert.equal(f.classifier, 'embedded')
  assert.equal(f.errors.length, 0)
  assert.ok(ms < 1500, `answered in ${ms.toFixed(0)} ms`)
  assert.deepEqual(codes, ['anthropic:timeout'])
})

test('GW-3: provider errors and answers outside the schema fall back, and report codes only (no text)', async () => {
  reset()
  const codes: string[] = []
  const c = llm({ onFallback: (e) => codes.push(JSON.stringify(e)) })
  const secret = 'Summarize the memo about Project Nightingale for the board'
  mock.failStatus = 500
  assert.equal((await c.classify(inputOf(secret))).classifier, 'embedded')
  mock.failStatus = undefined
  mock.answers.anthropic = { ...DEFAULT_TEXT_LABELS, domain: 'banana' }
  assert.equal((await c.classify(inputOf(secret))).classifier, 'embedded')
  mock.answers.anthropic = { ...DEFAULT_TEXT_LABELS, safety: [{ code: 'S99', severity: 'high' }] }
  assert.equal((await c.classify(inputOf(secret))).classifier, 'embedded')
  assert.equal(codes.length, 3)
  assert.ok(codes.every((c) => !c.includes('Nightingale') && !c.includes('memo')), codes.join(' '))
})

test('GW-3: low_margin mode escalates only uncertain requests; always mode escalates every one; an org’s setting overrides the instance’s', async () => {
  // Find, with the embedded classifier, prompts that are confident and prompts that are not.
  const candidates = loadPrompts().filter((p) => p.safety.length === 0 && !p.hard_negative).slice(0, 120)
  const base: Facts[] = await mapLimit(candidates, 4, (p) => embedded.classify(inputOf(p.prompt)))
  const probe = llm({ mode: 'low_margin' })
  const confident = candidates.filter((_, i) => !probe.shouldEscalate(base[i]!)).slice(0, 5)
  const uncertain = candidates.filter((_, i) => base[i]!.domainMargin < 0.3).slice(0, 5)
  assert.equal(confident.length, 5)
  assert.ok(uncertain.length >= 3, `${uncertain.length} low-margin prompts`)

  reset()
  for (const p of confident) assert.equal((await probe.classify(inputOf(p.prompt))).classifier, 'embedded')
  assert.equal(mock.received.length, 0, 'no confident request reached the LLM')
  for (const p of uncertain) assert.equal((await probe.classify(inputOf(p.prompt))).classifier, 'llm:anthropic')
  assert.equal(mock.received.length, uncertain.length, 'every low-margin request was escalated')

  reset()
  const always = llm({ mode: 'always' })
  for (const p of confident) await always.classify(inputOf(p.prompt))
  assert.equal(mock.received.length, confident.length)

  // Per org (the org setting classifier_llm): an org may ask for always on a low_margin
  // instance, or turn the LLM off on an always instance.
  reset()
  for (const p of confident) assert.equal((await probe.classify(inputOf(p.prompt), { llm: 'always' })).classifier, 'llm:anthropic')
  assert.equal(mock.received.length, confident.length, 'an org set to always escalates confident requests too')
  reset()
  for (const p of uncertain) assert.equal((await always.classify(inputOf(p.prompt), { llm: 'off' })).classifier, 'embedded')
  assert.equal(mock.received.length, 0, 'an org set to off never reaches the LLM')
})

test('GW-3: images go to Gemini with responseMimeType application/json and a responseSchema; labels come from a closed list; no request text is sent with them', async () => {
  reset()
  const input: ClassifierInput = {
    segments: [Content.of('Describe this scan for patient Maria Garcia, MRN 00482913')],
    images: [{ mediaType: 'image/png', data: Content.of('iVBORw0KGgoAAAANSUhEUg==') }],
    attachmentTypes: ['image/png'],
  }
  const f = await llm({ mode: 'low_margin', lowMargin: 0 }).classify(input)
  const g = mock.received.find((r) => r.provider === 'gemini')!
  assert.match(g.path, /^\/v1beta\/models\/gemini-2\.5-flash:generateContent$/)
  assert.equal(g.headers['x-goog-api-key'], CLASSIFIER_KEYS.gemini)
  assert.equal(g.body.generationConfig.responseMimeType, 'application/json')
  assert.equal(g.body.generationConfig.responseSchema.properties.labels.items.enum.includes('screenshot'), true)
  assert.equal(g.body.contents[0].parts[1].inlineData.mimeType, 'image/png')
  assert.ok(!g.raw.includes('Maria') && !g.raw.includes('00482913') && !g.raw.includes('Describe this scan'), 'no request text goes to the image classifier')
  assert.deepEqual(f.attachments.imageLabels, ['photo', 'document'])
  assert.ok(!f.errors.includes('image'))
  mock.answers.gemini = { labels: ['a photo of Maria Garcia'], safety: [] }
  const bad = await llm({ mode: 'low_margin', lowMargin: 0 }).classify(input)
  assert.deepEqual(bad.attachments.imageLabels, [], 'free text is rejected: labels come from IMAGE_LABELS only')
  assert.ok(bad.errors.includes('image'))
  mock.answers.gemini = { labels: ['photo', 'document'], safety: [] }
})

test('GW-3: createClassifier returns the embedded classifier without keys, and an LLM-backed one with them', async () => {
  const plain = createClassifier({ embedded: { workers: 1 } })
  assert.equal(plain.name, 'embedded')
  await plain.close()
  const withKeys = createClassifier({ embedded: { workers: 1 }, llm: { http, mode: 'low_margin', anthropic: { baseUrl: mock.url, apiKey: new Secret('k'), model: 'm' } } })
  assert.equal(withKeys.name, 'llm:anthropic')
  await withKeys.close()
})
