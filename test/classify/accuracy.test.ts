// Accuracy floors of the embedded classifier on the labelled fixtures (checked in CI).
// The fixtures are held out from the exemplars the centroids were built from (centroids.test.ts).
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { EmbeddedClassifier } from '../../src/classify/embedded.ts'
import type { Facts } from '../../src/classify/facts.ts'
import { MUST_NOT_MISS } from '../../src/classify/safety-rules.ts'
import { inputOf, loadPii, loadPrompts, mapLimit, scorePii, scorePrompts, type PromptReport } from './fixture.ts'

const prompts = loadPrompts()
const pii = loadPii()
let classifier: EmbeddedClassifier
let report: PromptReport
let piiFacts: Facts[]

before(async () => {
  classifier = new EmbeddedClassifier({ workers: 2 })
  await classifier.ready()
  const facts = await mapLimit(prompts, 4, (c) => classifier.classify(inputOf(c.prompt)))
  assert.deepEqual(facts.filter((f) => f.errors.length > 0).length, 0, 'no detector failed while measuring')
  report = scorePrompts(prompts, facts)
  piiFacts = await mapLimit(pii, 4, (c) => classifier.classify(inputOf(c.text)))
})
after(() => classifier?.close())

const pct = (x: number) => `${(100 * x).toFixed(1)}%`

test('GW-3: the labelled fixture is large enough and covers every domain, intent and must-not-miss category', () => {
  assert.ok(prompts.length >= 300, `${prompts.length} prompts`)
  assert.equal(new Set(prompts.map((p) => p.id)).size, prompts.length, 'ids are unique')
  for (const d of ['coding', 'math', 'writing', 'science', 'medical', 'legal', 'finance', 'other']) assert.ok(prompts.filter((p) => p.domain === d).length >= 25, d)
  for (const i of ['do_it', 'learn', 'debug']) assert.ok(prompts.filter((p) => p.intent === i).length >= 30, i)
  for (const code of MUST_NOT_MISS) assert.ok(prompts.filter((p) => p.safety.includes(code)).length >= 15, code)
  assert.ok(prompts.filter((p) => p.hard_negative).length >= 100, 'hard negatives')
  assert.ok(prompts.some((p) => /kill (?:every )?(?:a )?zombie process/i.test(p.prompt)), 'the canonical hard negative is there')
})

test('GW-3: domain accuracy ≥ 85% on the held-out fixture', () => {
  assert.ok(report.domain.accuracy >= 0.85, `domain ${report.domain.correct}/${report.domain.total} = ${pct(report.domain.accuracy)}; misses:\n${report.domain.misses.join('\n')}`)
})

test('GW-3: intent accuracy ≥ 80% on the held-out fixture', () => {
  assert.ok(report.intent.accuracy >= 0.8, `intent ${report.intent.correct}/${report.intent.total} = ${pct(report.intent.accuracy)}; misses:\n${report.intent.misses.join('\n')}`)
})

test('GW-6: must-not-miss safety recall is 100% (S1, S4, S9, S11 at medium or high severity)', () => {
  const misses = Object.entries(report.mustNotMiss).flatMap(([code, r]) => r.misses.map((m) => `${code}: ${m}`))
  assert.deepEqual(misses, [])
  assert.equal(report.mustNotMissRecall, 1)
})

test('GW-6: at most 5% of hard negatives are flagged, and no ordinary prompt is', () => {
  assert.ok(report.hardNegatives.rate <= 0.05, `hard negatives flagged ${report.hardNegatives.flagged}/${report.hardNegatives.total}: ${report.hardNegatives.ids.join('; ')}`)
  assert.ok(report.ordinary.flagged <= Math.floor(report.ordinary.total * 0.01), `ordinary prompts flagged: ${report.ordinary.ids.join('; ')}`)
})

test('GW-6: the other hazard categories are labelled (any severity) and prompt injection is flagged', () => {
  assert.ok(report.otherRecall.caught / report.otherRecall.total >= 0.85, `other categories ${report.otherRecall.caught}/${report.otherRecall.total}: ${report.otherRecall.misses.join('; ')}`)
  assert.ok(report.injection.tp >= 9 && report.injection.fp <= 1, JSON.stringify(report.injection))
})

test('GW-7: the PII fixture has ≥ 150 examples, negatives included (versions, UUIDs, order numbers)', () => {
  assert.ok(pii.length >= 150, `${pii.length} examples`)
  const negatives = pii.filter((c) => c.pii.length === 0)
  assert.ok(negatives.length >= 50, `${negatives.length} negatives`)
  for (const needle of [/version/i, /uuid/i, /order/i, /isbn/i, /\d+\.\d+\.\d+/]) assert.ok(negatives.some((c) => needle.test(c.text)), String(needle))
})

test('GW-7: PII recall ≥ 95% and precision ≥ 90% for every entity kind', () => {
  const scores = scorePii(pii, piiFacts.map((f) => f.pii))
  assert.ok(scores.size >= 12, `kinds measured: ${[...scores.keys()].join(', ')}`)
  for (const [kind, s] of scores) {
    assert.ok(s.recall >= 0.95, `${kind} recall ${s.tp}/${s.tp + s.fn}: ${s.misses.join('; ')}`)
    assert.ok(s.precision >= 0.9, `${kind} precision ${s.tp}/${s.tp + s.fp}: ${s.falsePositives.join('; ')}`)
  }
})
