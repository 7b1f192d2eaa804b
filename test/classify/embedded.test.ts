// The embedded classifier's runtime behaviour: Facts never carry text, the event loop stays free
// while the model works, the model loads once per worker, inputs are bounded, failures are
// reported as detector errors, and close() leaves no worker threads or ports behind.
import assert from 'node:assert/strict'
import { createHook } from 'node:async_hooks'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { after, before, test } from 'node:test'
import { Content } from '../../src/core/content.ts'
import { EmbeddedClassifier } from '../../src/classify/embedded.ts'
import { DETECTORS_FOR_TEST, closedVocabulary } from './vocabulary.ts'
import type { Facts } from '../../src/classify/facts.ts'
import { firstWords, MAX_EMBED_WORDS } from '../../src/classify/text.ts'
import { inputOf, loadPii, loadPrompts, mapLimit } from './fixture.ts'

// Track worker threads and message ports from here on (the close() test checks none is left).
const live = new Map<number, string>()
createHook({
  init(id, type) {
    if (type === 'WORKER' || type === 'MESSAGEPORT') live.set(id, type)
  },
  destroy(id) {
    live.delete(id)
  },
}).enable()

let classifier: EmbeddedClassifier
before(async () => {
  classifier = new EmbeddedClassifier({ workers: 2 })
  await classifier.ready()
})
after(() => classifier?.close())

/** Every string anywhere in a value (keys excluded). */
function strings(v: unknown, out: string[] = []): string[] {
  if (typeof v === 'string') out.push(v)
  else if (Array.isArray(v)) for (const x of v) strings(x, out)
  else if (v && typeof v === 'object') for (const x of Object.values(v)) strings(x, out)
  return out
}

/** Fixture strings a leak would show: whole prompts, PII values, and every 3-word run of a prompt. */
function needles(texts: readonly string[], values: readonly string[]): string[] {
  const out = new Set<string>(values.filter((v) => v.length >= 4))
  for (const t of texts) {
    out.add(t)
    const words = t.split(/\s+/).filter(Boolean)
    for (let i = 0; i + 3 <= words.length; i++) out.add(words.slice(i, i + 3).join(' '))
  }
  return [...out]
}

const leaks = (serialised: string, list: readonly string[]) => list.filter((n) => serialised.includes(n))

test('GW-7: Facts never contain text — every string is from a closed vocabulary, and no fixture text appears (positive control first)', async () => {
  const prompts = loadPrompts()
  const pii = loadPii()
  const texts = [...prompts.map((p) => p.prompt), ...pii.map((p) => p.text)]
  const list = needles(texts, pii.flatMap((p) => p.pii.map((x) => x.value)))
  // Positive control: the search finds text planted into a Facts-shaped value.
  const planted = JSON.stringify({ domain: 'coding', note: texts[7]!.slice(0, 40), pii: [{ kind: 'EMAIL_ADDRESS', value: pii[0]!.pii[0]!.value }] })
  assert.ok(leaks(planted, list).length >= 2, 'the leak search finds a planted prompt fragment and a PII value')
  assert.ok(strings({ a: ['x', { b: 'planted' }] }).includes('planted'), 'the string walk reaches nested values')

  const facts: Facts[] = await mapLimit(texts, 4, (t) => classifier.classify(inputOf(t)))
  const vocabulary = closedVocabulary()
  const foreign = new Set(facts.flatMap((f) => strings(f)).filter((s) => !vocabulary.has(s)))
  assert.deepEqual([...foreign], [], 'Facts hold only labels, codes and names from closed lists')
  const serialised = facts.map((f) => JSON.stringify(f)).join('\n')
  assert.deepEqual(leaks(serialised, list), [])
  assert.ok(DETECTORS_FOR_TEST.length > 0)
})

test('GW-3: the event loop is not blocked while 4 classifications run (the model works in worker threads)', async (t) => {
  const prompts = loadPrompts().map((p) => p.prompt)
  const h = monitorEventLoopDelay({ resolution: 1 })
  // Warm both workers, then measure rounds of 4 concurrent classifications.
  await Promise.all(prompts.slice(0, 4).map((p) => classifier.classify(inputOf(p))))
  h.enable()
  let n = 0
  for (let round = 0; round < 12; round++) {
    await Promise.all(prompts.slice(round * 4, round * 4 + 4).map((p) => classifier.classify(inputOf(p))))
    n += 4
  }
  h.disable()
  const ms = (ns: number) => ns / 1e6
  const summary = `lag over ${n} classifications: mean ${ms(h.mean).toFixed(1)} ms, p50 ${ms(h.percentile(50)).toFixed(1)}, p99 ${ms(h.percentile(99)).toFixed(1)}, max ${ms(h.max).toFixed(1)}`
  t.diagnostic(summary)
  // The bench measures the 10 ms target on a quiet machine; on a shared CI box a loaded scheduler
  // adds its own delay, so the test bounds the median and the typical value.
  assert.ok(ms(h.percentile(50)) <= 10, summary)
  assert.ok(ms(h.mean) <= 15, summary)
})

test('GW-3: the model loads once per worker and inputs are bounded (a 2 MB prompt classifies, the model sees ≤ 64 words)', async (t) => {
  const loads = classifier.pool.loadTimes
  assert.equal(loads.length, 2)
  assert.ok(loads.every((t) => typeof t === 'number' && t > 0))
  const huge = `${'Please review this Python function for bugs. '.repeat(3)}${'def f(x):\n    return x * 2\n'.repeat(80_000)}`
  assert.ok(huge.length > 2_000_000)
  const t0 = performance.now()
  const f = await classifier.classify(inputOf(huge))
  const ms = performance.now() - t0
  t.diagnostic(`2 MB prompt classified in ${ms.toFixed(0)} ms`)
  assert.equal(f.errors.length, 0)
  assert.equal(f.domain, 'coding')
  assert.ok(ms < 20_000, `2 MB classified in ${ms.toFixed(0)} ms`)
  assert.ok(firstWords(huge).split(' ').length <= MAX_EMBED_WORDS)
  // Same workers, no reload.
  assert.deepEqual(classifier.pool.loadTimes, loads)
})

test('GW-7: PII is found across segments and deep inside long text (windowed scan), with spans per segment', async () => {
  const filler = 'lorem ipsum dolor sit amet. '.repeat(2000) // ~56 KB: spans beyond the first window
  const input = { segments: [Content.of('You are a helpful assistant.'), Content.of(`${filler}Call me at (415) 867-5309.`), Content.of('My SSN is 536-22-8451')], images: [], attachmentTypes: [] }
  const f = await classifier.classify(input)
  const phone = f.pii.find((p) => p.kind === 'PHONE_NUMBER')
  const ssn = f.pii.find((p) => p.kind === 'US_SSN')
  assert.equal(phone?.spans[0]?.segment, 1)
  assert.equal(input.segments[1]!.reveal().slice(phone!.spans[0]!.start, phone!.spans[0]!.end), '(415) 867-5309')
  assert.equal(ssn?.spans[0]?.segment, 2)
})

test('GW-3: images and attachments are reported as facts; without an image model the image detector is marked failed', async () => {
  const f = await classifier.classify({ segments: [Content.of('What is in this picture?')], images: [{ mediaType: 'image/png', data: Content.of('iVBORw0KGgo=') }], attachmentTypes: ['image/png', 'text/csv'] })
  assert.deepEqual(f.attachments, { count: 2, mimeTypes: ['image/png', 'text/csv'], imageLabels: [] })
  assert.ok(f.errors.includes('image'))
})

test('GW-3: an embedding failure is reported as detector errors, never thrown; rules and PII still run', async () => {
  const c = new EmbeddedClassifier({ workers: 1, timeoutMs: 1 })
  try {
    await c.ready()
    const f = await c.classify(inputOf('I want to kill myself tonight, email me at a.b@example.com'))
    assert.ok(f.errors.includes('domain') && f.errors.includes('safety'), JSON.stringify(f.errors))
    assert.ok(f.safety.some((s) => s.code === 'S11' && s.severity === 'high'), 'the phrase rules still ran')
    assert.ok(f.pii.some((p) => p.kind === 'EMAIL_ADDRESS'), 'the PII detector still ran')
  } finally {
    await c.close()
  }
})

test('GW-3: an aborted request stops classification with the abort reason', async () => {
  const ac = new AbortController()
  ac.abort(new Error('client went away'))
  await assert.rejects(classifier.classify(inputOf('hello'), { signal: ac.signal }), /client went away/)
})

test('GW-3: a lazy pool (preloadModel: false) is ready without the model, classifies without it, and loads it once when a request needs it', async () => {
  const c = new EmbeddedClassifier({ workers: 1, preloadModel: false })
  try {
    await c.ready()
    assert.equal(c.pool.modelLoaded, false, 'ready without loading the model')
    const plain = await c.classify(inputOf('Email me at a.b@example.com about the report'), { model: false })
    assert.ok(plain.pii.some((p) => p.kind === 'EMAIL_ADDRESS'))
    assert.deepEqual(plain.errors, [])
    assert.equal(c.pool.modelLoaded, false, 'a request that does not need the model does not load it')
    const withModel = await c.classify(inputOf('Write a Python function that reverses a linked list.'))
    assert.equal(c.pool.modelLoaded, true, 'the first request that needs the model loaded it')
    assert.equal(withModel.domain, 'coding')
    assert.deepEqual(withModel.errors, [])
    const loads = c.pool.loadTimes
    await c.classify(inputOf('Solve 3x + 5 = 20 for x.'))
    assert.deepEqual(c.pool.loadTimes, loads, 'the model loads once')
  } finally {
    await c.close()
  }
})

test('GW-3: close() terminates every worker thread and message port (no handles left)', async () => {
  const c = new EmbeddedClassifier({ workers: 2 })
  await c.ready()
  await c.classify(inputOf('Write a haiku about the sea.'))
  await c.close()
  await classifier.close()
  await new Promise((r) => setTimeout(r, 100))
  assert.deepEqual([...live.values()], [], 'worker threads or ports still alive after close()')
  // A closed classifier still answers, with its model marked failed (policies fail closed on it).
  const f = await c.classify(inputOf('after close'))
  assert.ok(f.errors.includes('domain'))
})
