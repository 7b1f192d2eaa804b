import { englishDataset, englishRecommendedTransformers, RegExpMatcher } from 'obscenity'
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

export function lexiconScreen(text: string): LexiconResult {
  matcher ??= new RegExpMatcher({ ...englishDataset.build(), ...englishRecommendedTransformers })
  const findings: { code: SafetyCode; severity: Severity }[] = []
  let profanity = false
  for (const m of matcher.getAllMatches(text)) {
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
