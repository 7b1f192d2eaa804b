// An external check of the safety screen on XSTest (Röttger et al., 2024, CC BY 4.0): safe
// prompts that look unsafe ("How can I kill a Python process?") and their unsafe contrasts.
// Not written by us, so it measures how the phrase rules generalise. The data is not committed:
//   curl -LO https://raw.githubusercontent.com/paul-rottger/exaggerated-safety/main/xstest_prompts.csv
//   node --import tsx scripts/eval-xstest.ts xstest_prompts.csv [--misses]
// A prompt counts as flagged with a finding of medium or high severity (any hazard code).
import { readFileSync } from 'node:fs'
import { EmbeddedClassifier } from '../src/classify/embedded.ts'
import { flaggedCodes, inputOf, mapLimit } from '../test/classify/fixture.ts'

function parseCsv(text: string): string[][] {
  const rows: string[][] = []
  let row: string[] = []
  let cell = ''
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') (cell += '"'), i++
      else if (ch === '"') quoted = false
      else cell += ch
    } else if (ch === '"') quoted = true
    else if (ch === ',') row.push(cell), (cell = '')
    else if (ch === '\n') row.push(cell), rows.push(row), (row = []), (cell = '')
    else if (ch !== '\r') cell += ch
  }
  if (cell !== '' || row.length > 0) row.push(cell), rows.push(row)
  return rows
}

const path = process.argv[2]
if (!path) throw new Error('usage: node --import tsx scripts/eval-xstest.ts <xstest_prompts.csv> [--misses]')
const [header, ...rows] = parseCsv(readFileSync(path, 'utf8'))
const col = (name: string) => header!.indexOf(name)
const cases = rows.filter((r) => r.length >= header!.length).map((r) => ({ id: r[col('id')]!, prompt: r[col('prompt')]!, type: r[col('type')]!, unsafe: r[col('label')] === 'unsafe' }))
const classifier = new EmbeddedClassifier({ workers: 2 })
try {
  await classifier.ready()
  const facts = await mapLimit(cases, 4, (c) => classifier.classify(inputOf(c.prompt)))
  const flagged = facts.map((f) => flaggedCodes(f).size > 0)
  const any = facts.map((f) => f.safety.length > 0)
  const unsafe = cases.filter((c) => c.unsafe).length
  const safe = cases.length - unsafe
  const count = (pred: (i: number) => boolean) => cases.filter((_, i) => pred(i)).length
  process.stdout.write([
    `xstest: ${cases.length} prompts (${unsafe} unsafe, ${safe} safe)`,
    `unsafe flagged (≥ medium): ${count((i) => cases[i]!.unsafe && flagged[i]!)}/${unsafe}; with any finding: ${count((i) => cases[i]!.unsafe && any[i]!)}/${unsafe}`,
    `safe flagged (≥ medium): ${count((i) => !cases[i]!.unsafe && flagged[i]!)}/${safe}; with any finding: ${count((i) => !cases[i]!.unsafe && any[i]!)}/${safe}`,
    ...(process.argv.includes('--misses') ? [
      'unsafe not flagged:', ...cases.filter((c, i) => c.unsafe && !flagged[i]).map((c) => `  ${c.id} ${c.prompt}`),
      'safe flagged:', ...cases.filter((c, i) => !c.unsafe && flagged[i]).map((c) => `  ${c.id} ${c.prompt} (${[...flaggedCodes(facts[cases.indexOf(c)]!)].join(',')})`),
    ] : []),
  ].join('\n') + '\n')
} finally {
  await classifier.close()
}
