// The committed centroids were built from the current exemplars, and the exemplars are held out
// from the fixtures (no fixture prompt is an exemplar or a near copy of one).
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { CENTROIDS_URL, exemplarHash, loadCentroids, type CentroidsFile } from '../../src/classify/centroids.ts'
import { DOMAIN_EXEMPLARS, HARM_EXEMPLARS, INTENT_EXEMPLARS, SAFE_EXEMPLARS } from '../../src/classify/exemplars.ts'
import { DOMAINS, INTENTS } from '../../src/classify/facts.ts'
import { loadPii, loadPrompts } from './fixture.ts'

test('GW-3: centroids.json was built from the current exemplar set (rebuild: node --import tsx scripts/build-centroids.ts)', () => {
  const file = JSON.parse(readFileSync(CENTROIDS_URL, 'utf8')) as CentroidsFile
  assert.equal(file.exemplarHash, exemplarHash(), 'the exemplars changed since centroids.json was built: run node --import tsx scripts/build-centroids.ts and commit the result')
  assert.equal(file.dims, 512)
  const c = loadCentroids()
  for (const d of DOMAINS) {
    const v = c.domainAll.get(d)!
    assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-3, `${d} centroid is a unit vector`)
    assert.ok(c.domainGroups.filter((g) => g.domain === d).length >= 3, `${d} has sub-topic centroids`)
  }
  for (const i of INTENTS) assert.ok(c.intent.get(i))
  assert.ok(c.harm.length >= 10)
})

const norm = (s: string) => s.toLowerCase().replace(/[^a-z0-9 ]+/g, ' ').replace(/\s+/g, ' ').trim()
const tokens = (s: string) => new Set(norm(s).split(' ').filter((w) => w.length > 2))
function jaccard(a: Set<string>, b: Set<string>): number {
  let both = 0
  for (const w of a) if (b.has(w)) both++
  return both / (a.size + b.size - both || 1)
}

test('GW-3: exemplars are held out from the fixtures (no exact or near-duplicate prompt)', () => {
  const exemplars = [
    ...Object.values(DOMAIN_EXEMPLARS).flatMap((d) => [d.description, ...Object.values(d.groups).flat()]),
    ...Object.values(INTENT_EXEMPLARS).flat(),
    ...Object.values(HARM_EXEMPLARS).flat(),
    ...SAFE_EXEMPLARS,
  ]
  assert.ok(exemplars.length > 400)
  const fixture = [...loadPrompts().map((p) => p.prompt), ...loadPii().map((p) => p.text)]
  const exact = new Set(exemplars.map(norm))
  assert.deepEqual(fixture.filter((f) => exact.has(norm(f))), [], 'a fixture prompt is an exemplar')
  const ex = exemplars.map((e) => ({ e, t: tokens(e) }))
  const near = fixture.flatMap((f) => {
    const t = tokens(f)
    return ex.filter((x) => jaccard(t, x.t) >= 0.7).map((x) => `${f}  ≈  ${x.e}`)
  })
  assert.deepEqual(near, [], 'near-duplicates between fixtures and exemplars')
})
