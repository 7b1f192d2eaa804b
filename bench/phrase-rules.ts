// The phrase rules' CPU per KB of text, with and without the required-literal gate (GW-6):
//   node --import tsx bench/phrase-rules.ts [repetitions]
// Three inputs: the fixture prompts one by one (short segments, as most requests are), the
// fixture prompts joined into one text, and a ~1 KB ordinary coding question. Gated and ungated
// runs are interleaved, each repetition in a fresh order; it prints the median of the
// repetitions in µs per KB (this is a noisy 2-core box: compare numbers from the same run only).
// It also checks, on every input, that the gate changes no result.
import { readFileSync } from 'node:fs'
import { matchPhraseRules, matchPhraseRulesUngated, normaliseForRules, PHRASE_RULES } from '../src/classify/safety-rules.ts'

const REPS = Number(process.argv[2] ?? 7)
/** Target wall time of one measurement, in ms. */
const SLICE_MS = 300

const CODING = normaliseForRules(`I'm building a small React app with TypeScript and Vite, and I have a question about data fetching. What is the best way to fetch a list of users from our REST API when the component mounts, show a loading spinner while the request is in flight, and handle errors without crashing the whole page? Right now I have a useEffect that calls fetch('/api/users') and then sets state with setUsers(data), but when I navigate away before the request finishes I get the warning "Can't perform a React state update on an unmounted component". How do I cancel the request properly? Should I use an AbortController inside the effect and return a cleanup function, or is it better to move everything into a custom hook like useUsers()? I would also like to add pagination later, so the hook should probably take a page number and a page size. We don't use Redux, and I'd rather not add React Query yet unless it is really the simplest option. Can you show me an example of the hook, the component that uses it, and a short explanation of why the cleanup function prevents the warning? Thanks!`)
const PROMPTS = readFileSync(new URL('../test/fixtures/classify/prompts.jsonl', import.meta.url), 'utf8')
  .split('\n').filter((l) => l.trim() !== '').map((l) => normaliseForRules((JSON.parse(l) as { prompt: string }).prompt))

const INPUTS: Record<string, readonly string[]> = {
  'fixture prompts, one by one': PROMPTS,
  'fixture prompts, joined': [PROMPTS.join(' ')],
  '1 KB coding question': [CODING],
}
type Match = (text: string) => unknown
const VARIANTS: Record<string, Match> = { ungated: (t) => matchPhraseRulesUngated(t), gated: (t) => matchPhraseRules(t) }

const ids = (f: (t: string) => { rule: { id: string } }[], t: string) => f(t).map((h) => h.rule.id).join()
for (const texts of Object.values(INPUTS)) {
  for (const t of texts) if (ids(matchPhraseRules, t) !== ids(matchPhraseRulesUngated, t)) throw new Error('the gate changed a result')
}

const t0 = performance.now()
matchPhraseRules('', [...PHRASE_RULES]) // a fresh array: builds the Needs' checker again
console.log(`gate build for ${PHRASE_RULES.length} rules (patterns already analysed): ${(performance.now() - t0).toFixed(1)} ms`)

/** µs per KB of one pass over `texts`, repeated for about SLICE_MS. */
function measure(fn: Match, texts: readonly string[]): number {
  const kb = texts.reduce((a, t) => a + t.length, 0) / 1024
  let passes = 0
  const start = performance.now()
  let now = start
  while (now - start < SLICE_MS) {
    for (const t of texts) fn(t)
    passes++
    now = performance.now()
  }
  return ((now - start) * 1000) / passes / kb
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
for (const [name, texts] of Object.entries(INPUTS)) {
  for (const fn of Object.values(VARIANTS)) measure(fn, texts) // warm-up
  const results: Record<string, number[]> = { ungated: [], gated: [] }
  for (let r = 0; r < REPS; r++) {
    const order = r % 2 === 0 ? ['ungated', 'gated'] : ['gated', 'ungated']
    for (const v of order) results[v]!.push(measure(VARIANTS[v]!, texts))
  }
  const kb = texts.reduce((a, t) => a + t.length, 0) / 1024
  const u = median(results['ungated']!)
  const g = median(results['gated']!)
  console.log(`${name} (${texts.length} text${texts.length > 1 ? 's' : ''}, ${kb.toFixed(1)} KB): ungated ${u.toFixed(1)} µs/KB, gated ${g.toFixed(1)} µs/KB (${(u / g).toFixed(1)}×)`)
  console.log(`  runs ungated ${results['ungated']!.map((x) => x.toFixed(1)).join(' ')} | gated ${results['gated']!.map((x) => x.toFixed(1)).join(' ')}`)
}
