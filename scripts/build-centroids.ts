// Builds src/classify/centroids.json from the exemplars in src/classify/exemplars.ts:
//   node --import tsx scripts/build-centroids.ts
// Every exemplar is embedded with the same USE-lite worker the classifier uses; each label gets
// the normalised mean of its vectors. The file records a hash of the exemplar set, so a test
// fails when someone edits the exemplars and forgets to rebuild. Commit the result.
import { writeFileSync } from 'node:fs'
import { CENTROIDS_FORMAT, CENTROIDS_MODEL, CENTROIDS_URL, centroidOf, exemplarHash, type CentroidsFile } from '../src/classify/centroids.ts'
import { EMBED_DIMS, EmbedPool } from '../src/classify/embed-pool.ts'
import { DOMAIN_EXEMPLARS, HARM_EXEMPLARS, INTENT_EXEMPLARS, SAFE_EXEMPLARS } from '../src/classify/exemplars.ts'
import { DOMAINS, INTENTS, SAFETY_CODES, type Domain, type Intent } from '../src/classify/facts.ts'
import { firstWords } from '../src/classify/text.ts'

const pool = new EmbedPool({ workers: 2, timeoutMs: 120_000 })
const round = (v: Float32Array) => Array.from(v, (x) => Math.round(x * 1e6) / 1e6)

async function embedAll(texts: readonly string[]): Promise<Float32Array[]> {
  // The classifier embeds at most the first 64 words; exemplars get the same view.
  const cut = texts.map((t) => firstWords(t))
  const out: Float32Array[] = []
  const batches: string[][] = []
  for (let i = 0; i < cut.length; i += 16) batches.push(cut.slice(i, i + 16))
  const results = await Promise.all(batches.map((b) => pool.embed(b)))
  for (const r of results) out.push(...r.map((v) => Float32Array.from(v)))
  return out
}

try {
  const t0 = performance.now()
  await pool.ready()
  const domain = {} as Record<Domain, { all: number[]; groups: Record<string, number[]> }>
  let count = 0
  for (const d of DOMAINS) {
    const ex = DOMAIN_EXEMPLARS[d]
    const groups: Record<string, number[]> = {}
    const every: Float32Array[] = []
    for (const [name, texts] of Object.entries(ex.groups)) {
      const vs = await embedAll(texts)
      groups[name] = round(centroidOf(vs))
      every.push(...vs)
      count += texts.length
    }
    // The description counts like two exemplars in the domain-wide centroid.
    const [desc] = await embedAll([ex.description])
    domain[d] = { all: round(centroidOf([...every, desc!, desc!])), groups }
  }
  const intent = {} as Record<Intent, number[]>
  for (const i of INTENTS) {
    intent[i] = round(centroidOf(await embedAll(INTENT_EXEMPLARS[i])))
    count += INTENT_EXEMPLARS[i].length
  }
  const harm = {} as Record<string, number[]>
  for (const code of SAFETY_CODES) {
    const texts = HARM_EXEMPLARS[code]
    if (!texts) continue
    harm[code] = round(centroidOf(await embedAll(texts)))
    count += texts.length
  }
  const safe = round(centroidOf(await embedAll(SAFE_EXEMPLARS)))
  count += SAFE_EXEMPLARS.length
  const file: CentroidsFile = {
    format: CENTROIDS_FORMAT, model: CENTROIDS_MODEL, exemplarHash: exemplarHash(), dims: EMBED_DIMS,
    domain, intent, harm, safe,
  }
  writeFileSync(CENTROIDS_URL, `${JSON.stringify(file)}\n`)
  process.stdout.write(`centroids.json: ${count} exemplars embedded in ${((performance.now() - t0) / 1000).toFixed(1)} s, hash ${file.exemplarHash.slice(0, 12)}\n`)
} finally {
  await pool.close()
}
