import {
  englishDataset, englishRecommendedBlacklistMatcherTransformers, englishRecommendedTransformers, RegExpMatcher,
  type MatchPayload, type StatefulTransformer, type TransformerContainer, type TransformerFn,
} from 'obscenity'
import type { SafetyCode, Severity } from './facts.ts'

/**
 * The lexicon layer of the safety screen: `obscenity`'s English word list, which resists
 * obfuscation (spacing, look-alike characters, repeated letters). Slurs become S10 (hate),
 * explicit sexual terms S12 at low severity; plain profanity is not a hazard category, so it
 * only sets the `profanity` fact. Anatomical and clinical words are left out on purpose
 * (medical prompts use them).
 */
const SLURS = new Set(['abeed', 'abo', 'africoon', 'arabush', 'boonga', 'chingchong', 'chink', 'dyke', 'fag', 'kike', 'nigger', 'tranny'])
const MILD_SLURS = new Set(['negro', 'retard', 'spastic'])
const SEXUAL = new Set(['blowjob', 'buttplug', 'cum', 'deepthroat', 'dildo', 'doggystyle', 'double penetration', 'felch', 'fellatio', 'finger bang', 'fisting', 'gangbang', 'handjob', 'hentai', 'jerk off', 'jizz', 'lubejob', 'masturbate', 'orgasm', 'orgy', 'porn', 'scat'])
const SEX_CRIME = new Set(['rape', 'bestiality', 'incest'])
/** Words obscenity flags that are ordinary in medical, scientific or everyday text. */
const CLINICAL = new Set(['anal', 'anus', 'penis', 'vagina', 'semen', 'ejaculate', 'sex', 'boob', 'tit', 'hooker'])

let matcher: RegExpMatcher | undefined

export interface LexiconResult {
  readonly findings: readonly { readonly code: SafetyCode; readonly severity: Severity }[]
  readonly profanity: boolean
}

// ---- the exact prefilter ---------------------------------------------------------------------
//
// obscenity's getAllMatches() transforms the whole text twice (one pass for its whitelist, one
// for its blacklist: a per-character iterator through four transformers) and then runs ~120 term
// regexes over the result. Almost every prompt matches none of them. The prefilter below decides
// "no match at all" exactly, then the real matcher runs on whatever is left:
//
//  1. `transformed(text)` is, character for character, the string obscenity's blacklist pass
//     builds (RegExpMatcher.applyTransformers with englishRecommendedBlacklistMatcherTransformers):
//     the same code-point iteration (surrogate pairs combined, lone surrogates as they are), the
//     same transformer containers applied in the same order with TransformerSet.applyTo's rules
//     (a chain stops at the first `undefined`), the stateful ones (collapse-duplicates) as fresh
//     instances from their own factories. Only the leading pure (simple) transformers'
//     composition is memoised per code unit — the character maps, not text.
//  2. `anyTerm` is the alternation of the matcher's own compiled term regexes (same sources,
//     same `s` flag). An alternation matches at a position iff one of its branches does, so it
//     finds nothing iff no term regex matches anywhere — and then getAllMatches() returns no
//     match (the whitelist only removes matches).
//
// When the prefilter finds something, obscenity itself decides. test/classify/screen-equivalence
// checks both steps against obscenity on the fixtures and on obfuscated text.

interface Prefilter {
  readonly transformed: (text: string) => string
  readonly anyTerm: RegExp
}

let prefilter: Prefilter | null | undefined

/** The prefilter, or null when obscenity's internals are not what it was written against (then the matcher runs on everything). */
function buildPrefilter(m: RegExpMatcher): Prefilter | null {
  const terms = (m as unknown as { blacklistedTerms?: unknown }).blacklistedTerms
  if (!Array.isArray(terms) || terms.length === 0) return null
  const sources: string[] = []
  for (const t of terms) {
    const re = (t as { regExp?: unknown }).regExp
    if (!(re instanceof RegExp) || re.flags !== 'gs') return null
    sources.push(`(?:${re.source})`)
  }
  const transformers: readonly TransformerContainer[] = englishRecommendedBlacklistMatcherTransformers
  if (englishRecommendedTransformers.blacklistMatcherTransformers !== transformers) return null
  return { transformed: transformerPipeline(transformers), anyTerm: new RegExp(sources.join('|'), 's') }
}

const UNKNOWN = -2
const DROPPED = -1

/** TransformerSet.applyTo + RegExpMatcher.applyTransformers (the transformed string only), with the leading simple transformers memoised per code unit. */
export function transformerPipeline(containers: readonly TransformerContainer[]): (text: string) => string {
  let lead = 0
  while (lead < containers.length && containers[lead]!.type === 0 /* Simple */) lead++
  const simple: TransformerFn[] = containers.slice(0, lead).map((c) => (c as { transform: TransformerFn }).transform)
  const rest = containers.slice(lead)
  const applySimple = (c: number): number => {
    let t: number | undefined = c
    for (let i = 0; i < simple.length && t !== undefined; i++) t = simple[i]!(t)
    return t === undefined ? DROPPED : t
  }
  const bmp = new Int32Array(0x10000).fill(UNKNOWN)
  return (text: string): string => {
    // Fresh stateful transformers per text: obscenity resets its own after every text, to the same state.
    const stateful: (StatefulTransformer | undefined)[] = rest.map((c) => (c.type === 1 ? c.factory() : undefined))
    const n = text.length
    // A code unit (or pair) yields at most one code point: at most two code units out per unit in.
    const out = new Uint16Array(2 * n)
    let len = 0
    for (let i = 0; i < n; i++) {
      let cp = text.charCodeAt(i)
      let t: number
      if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < n) {
        const next = text.charCodeAt(i + 1)
        if (next >= 0xdc00 && next <= 0xdfff) {
          cp = (cp - 0xd800) * 0x400 + next - 0xdc00 + 0x10000
          i++
        }
      }
      if (cp < 0x10000) {
        t = bmp[cp]!
        if (t === UNKNOWN) t = bmp[cp] = applySimple(cp)
      } else t = applySimple(cp)
      if (t === DROPPED) continue
      let r: number | undefined = t
      for (let k = 0; k < rest.length && r !== undefined; k++) {
        const c = rest[k]!
        r = c.type === 0 ? c.transform(r) : stateful[k]!.transform(r)
      }
      if (r === undefined) continue
      if (r < 0x10000) out[len++] = r
      else {
        out[len++] = ((r - 0x10000) >> 10) + 0xd800
        out[len++] = ((r - 0x10000) & 0x3ff) + 0xdc00
      }
    }
    let s = ''
    for (let from = 0; from < len; from += 8192) s += String.fromCharCode.apply(null, out.subarray(from, Math.min(len, from + 8192)) as unknown as number[])
    return s
  }
}

/** True when obscenity's blacklist could match somewhere in `text`; false means getAllMatches(text) is empty. */
export function lexiconMayMatch(text: string): boolean {
  matcher ??= new RegExpMatcher({ ...englishDataset.build(), ...englishRecommendedTransformers })
  if (prefilter === undefined) prefilter = buildPrefilter(matcher)
  if (prefilter === null) return true
  return prefilter.anyTerm.test(prefilter.transformed(text))
}

export function lexiconScreen(text: string): LexiconResult {
  matcher ??= new RegExpMatcher({ ...englishDataset.build(), ...englishRecommendedTransformers })
  if (!lexiconMayMatch(text)) return { findings: [], profanity: false }
  return lexiconOfMatches(matcher.getAllMatches(text))
}

/** What obscenity's matches mean here: slurs and sexual terms as findings, the rest as profanity, clinical words as nothing. */
export function lexiconOfMatches(matches: readonly MatchPayload[]): LexiconResult {
  const findings: { code: SafetyCode; severity: Severity }[] = []
  let profanity = false
  for (const m of matches) {
    const word = englishDataset.getPayloadWithPhraseMetadata(m).phraseMetadata?.originalWord ?? ''
    if (CLINICAL.has(word)) continue
    if (SLURS.has(word)) findings.push({ code: 'S10', severity: 'medium' })
    else if (MILD_SLURS.has(word)) findings.push({ code: 'S10', severity: 'low' })
    else if (SEXUAL.has(word)) findings.push({ code: 'S12', severity: 'low' })
    else if (SEX_CRIME.has(word)) findings.push({ code: 'S3', severity: 'low' })
    else profanity = true
  }
  return { findings, profanity }
}
