// Prints the embedded classifier's accuracy on the labelled fixtures, with every miss:
//   node --import tsx scripts/eval-classify.ts [--misses]
// The same metrics are CI floors in test/classify/accuracy.test.ts; this is the tool for
// working on exemplars and rules (prompts printed here are fixture text, not user content).
import { EmbeddedClassifier } from '../src/classify/embedded.ts'
import { detectPiiInSegments } from '../src/classify/pii.ts'
import { inputOf, loadPii, loadPrompts, mapLimit, scorePii, scorePrompts } from '../test/classify/fixture.ts'

const showMisses = process.argv.includes('--misses')
const pct = (x: number) => `${(100 * x).toFixed(1)}%`

const classifier = new EmbeddedClassifier({ workers: 2 })
try {
  await classifier.ready()
  const cases = loadPrompts()
  const t0 = performance.now()
  const facts = await mapLimit(cases, 4, (c) => classifier.classify(inputOf(c.prompt)))
  const wall = performance.now() - t0
  const r = scorePrompts(cases, facts)
  const lines = [
    `prompts: ${cases.length} in ${(wall / 1000).toFixed(1)} s`,
    `domain:  ${r.domain.correct}/${r.domain.total} = ${pct(r.domain.accuracy)}`,
    `intent:  ${r.intent.correct}/${r.intent.total} = ${pct(r.intent.accuracy)}`,
    `must-not-miss recall: ${pct(r.mustNotMissRecall)}  ${Object.entries(r.mustNotMiss).map(([k, v]) => `${k} ${v.caught}/${v.total}`).join('  ')}`,
    `other categories (any severity): ${r.otherRecall.caught}/${r.otherRecall.total}`,
    `hard negatives flagged (≥ medium): ${r.hardNegatives.flagged}/${r.hardNegatives.total} = ${pct(r.hardNegatives.rate)}; with any finding (incl. low): ${r.hardNegatives.anyFinding}`,
    `ordinary prompts flagged (≥ medium): ${r.ordinary.flagged}/${r.ordinary.total}; with any finding: ${r.ordinary.anyFinding}`,
    `injection: tp ${r.injection.tp} fp ${r.injection.fp} fn ${r.injection.fn}`,
  ]
  if (showMisses) {
    lines.push('', 'domain misses:', ...r.domain.misses, '', 'intent misses:', ...r.intent.misses)
    for (const [k, v] of Object.entries(r.mustNotMiss)) if (v.misses.length) lines.push(`${k} misses: ${v.misses.join('; ')}`)
    lines.push(`other misses: ${r.otherRecall.misses.join('; ')}`, `hard negatives flagged: ${r.hardNegatives.ids.join('; ')}`, `ordinary flagged: ${r.ordinary.ids.join('; ')}`, `injection: ${r.injection.ids.join('; ')}`)
  }
  const pii = loadPii()
  const found = await Promise.all(pii.map((c) => detectPiiInSegments([c.text])))
  const scores = scorePii(pii, found)
  const errors = facts.filter((f) => f.errors.length > 0).length
  if (errors > 0) lines.push(`classifications with detector errors: ${errors}`)
  lines.push('', `pii: ${pii.length} examples`)
  for (const [kind, s] of [...scores.entries()].sort()) {
    lines.push(`  ${kind.padEnd(22)} recall ${s.tp}/${s.tp + s.fn} = ${pct(s.recall)}  precision ${s.tp}/${s.tp + s.fp} = ${pct(s.precision)}`)
    if (showMisses) for (const m of [...s.misses.map((x) => `    miss ${x}`), ...s.falsePositives.map((x) => `    false ${x}`)]) lines.push(m)
  }
  process.stdout.write(`${lines.join('\n')}\n`)
} finally {
  await classifier.close()
}
