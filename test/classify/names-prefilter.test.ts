import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { findPeople, nameCandidates, personSpans } from '../../src/classify/pii.ts'

/**
 * GW-7 (speed without losing names): compromise runs only on the sentences `nameCandidates`
 * keeps. Through the prefilter it never finds a span it would not find over the whole text, it
 * finds every labelled name of the PII fixture the whole-text scan finds, and on sentences built
 * to sit on the rule's edges it finds exactly the same spans. What it may drop is compromise's
 * guess at a lower-case word after a cue that its lexicon does not know as a name ("leaves with
 * brown spots" → "brown"), which the PII fixture's precision counts as a false positive anyway.
 */

const lines = (name: string) => readFileSync(new URL(`../fixtures/classify/${name}`, import.meta.url), 'utf8')
  .split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as { text?: string; prompt?: string; pii?: { kind: string; value: string }[] })

const EDGES = [
  'Dr. emily reviewed it. Thanks, john.',
  'Emily Chen approved the change; ask her.',
  'hi maria, the report is late! Regards, Tom',
  'You answer in plain English, briefly, for an operations audience.',
  'On Monday we fly to Paris with Will Smith.',
  'Our replication scheme acknowledges writes after two of three replicas confirm.',
  'email karen.lopez@example.com (Karen Lopez) about v1.2.3... then call Nguyen',
  'My manager Priya Raman said the Kubernetes cluster is fine.',
  'The Monte Carlo method and Newton\'s laws are not people. Ask Ms. Okafor.',
]

const spans = (text: string, view: string) => personSpans(text, view === '' ? [] : findPeople(view)).map((s) => `${s.start}-${s.end}:${s.confidence}`)

test('GW-7: the name prefilter loses no labelled name and invents none (both fixtures and edge sentences)', () => {
  const pii = lines('pii.jsonl')
  const texts = [...pii.map((l) => l.text!), ...lines('prompts.jsonl').map((l) => l.prompt!), ...EDGES]
  let skipped = 0
  let dropped = 0
  for (const text of texts) {
    const view = nameCandidates(text)
    assert.equal(view === '' || view.length === text.length, true, 'offsets are kept')
    if (view === '') skipped++
    const full = spans(text, text)
    const filtered = spans(text, view)
    assert.deepEqual(filtered.filter((x) => !full.includes(x)), [], `the prefilter invented a span in: ${text}`)
    dropped += full.length - filtered.length
  }
  for (const text of EDGES) assert.deepEqual(spans(text, nameCandidates(text)), spans(text, text), `edge sentence: ${text}`)
  let labelled = 0
  for (const l of pii) {
    for (const p of l.pii ?? []) {
      if (p.kind !== 'PERSON') continue
      const at = l.text!.indexOf(p.value)
      const found = (view: string) => personSpans(l.text!, view === '' ? [] : findPeople(view)).some((s) => s.start <= at && s.end >= at + p.value.length)
      if (!found(l.text!)) continue
      labelled++
      assert.ok(found(nameCandidates(l.text!)), `labelled name lost: ${p.value}`)
    }
  }
  // The prefilter matters (most prompts hold no candidate) and the fixture does hold names.
  assert.ok(skipped > texts.length / 3, `skipped ${skipped} of ${texts.length}`)
  assert.ok(labelled >= 15, `labelled names found: ${labelled}`)
  assert.ok(dropped <= 3, `spans dropped: ${dropped}`)
})

test('GW-7: a sentence is blanked (same length) unless it can hold a name; a text without one gives ""', () => {
  assert.equal(nameCandidates('Draft a short status note. Our storage tier moved.'), '')
  assert.equal(nameCandidates('The build failed. Ask Priya Raman.'), `${' '.repeat(18)}Ask Priya Raman.`)
  assert.equal(nameCandidates('Send it to john. It broke.'), `Send it to john.${' '.repeat(10)}`)
})
