// Equivalence of the faster screens with what they replaced (GW-6): the lexicon prefilter and the
// phrase-rule normalisation must give exactly the results of the earlier code — obscenity's
// matcher on every text, and the normalisation's earlier regexes (kept below) — on every fixture
// and on obfuscated and random text.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { englishDataset, englishRecommendedTransformers, RegExpMatcher } from 'obscenity'
import { lexiconMayMatch, lexiconOfMatches, lexiconScreen } from '../../src/classify/lexicon.ts'
import { normaliseForRules } from '../../src/classify/safety-rules.ts'
import { prng as rng } from '../helpers/prng.ts'

// ---- inputs ----------------------------------------------------------------------------------

const jsonl = (name: string) => readFileSync(new URL(`../fixtures/classify/${name}`, import.meta.url), 'utf8')
  .split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as { text?: string; prompt?: string })
const FIXTURES = [...jsonl('prompts.jsonl'), ...jsonl('pii.jsonl')].map((c) => (c.prompt ?? c.text)!)

const obscenity = new RegExpMatcher({ ...englishDataset.build(), ...englishRecommendedTransformers })
const blacklist = (obscenity as unknown as { blacklistMatcherTransformers: unknown }).blacklistMatcherTransformers
const applyTransformers = (text: string): string =>
  (obscenity as unknown as { applyTransformers: (t: string, set: unknown) => [number[], string] }).applyTransformers(text, blacklist)[1]

/** For every letter, the code points obscenity's transformers turn into it (look-alikes, leetspeak, case). */
const LOOKALIKES: Map<string, string[]> = (() => {
  const out = new Map<string, string[]>()
  const ranges: [number, number][] = [[0x20, 0x7e], [0xa0, 0x2fff], [0xff00, 0xffef], [0x1d400, 0x1d7ff], [0x1f100, 0x1f1ff]]
  for (const [lo, hi] of ranges) {
    for (let cp = lo; cp <= hi; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue
      const ch = String.fromCodePoint(cp)
      const t = applyTransformers(ch)
      if (/^[a-z]$/.test(t)) out.set(t, [...(out.get(t) ?? []), ch])
    }
  }
  return out
})()

const WORDS = ['fuck', 'shit', 'bitch', 'cunt', 'asshole', 'dick', 'whore', 'slut', 'bastard', 'kike', 'nigger', 'fag', 'chink', 'tranny', 'retard', 'spastic', 'negro',
  'blowjob', 'dildo', 'porn', 'orgasm', 'hentai', 'jizz', 'rape', 'incest', 'bestiality', 'penis', 'vagina', 'anal', 'boonga', 'abeed', 'fellatio', 'masturbate', 'cum']

/** A word disguised the ways obscenity undoes: look-alikes, case, repeated letters. */
function disguise(word: string, r: () => number): string {
  let out = ''
  for (const ch of word) {
    const alts = LOOKALIKES.get(ch) ?? [ch]
    const pick = r() < 0.5 ? ch : alts[Math.floor(r() * alts.length)]!
    out += pick.repeat(r() < 0.2 ? 2 + Math.floor(r() * 3) : 1)
  }
  return out
}

const ALPHABET = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 @$!|()/.,;:-\'"\n\t', '\u00a0', '\u2019', '\u201c', '\ud83d\ude00', '\ud800', '\udc00', 'é', 'ｆ', '𝐟', 'ⓕ', '\u0430', '\u03bf']
function randomText(r: () => number, words = true): string {
  let out = ''
  const n = Math.floor(r() * 120)
  for (let i = 0; i < n; i++) {
    if (words && r() < 0.08) out += disguise(WORDS[Math.floor(r() * WORDS.length)]!, r)
    else out += ALPHABET[Math.floor(r() * ALPHABET.length)]!
  }
  return out
}

const ADVERSARIAL = [
  'what the fuck is this bug', 'f u c k', 'fuuuuuck', 'FUCK', 'sh1t', 'ⓕⓤⓒⓚ', '𝐟𝐮𝐜𝐤', 'ｆｕｃｋ', 'k1ke', 'n1gg3r', 'a$$hole', '@ss', 'b!tch', 'pr0n', 'p0rn',
  'you are a k1ke', 'The penis and vagina are covered in chapter 3 of the anatomy course.', 'Scunthorpe United', 'cockpit', 'assassin', 'classic analysis',
  'fu\ud83d\ude00ck', 'f\ud800uck', 'fuck\ud800', '\udc00fuck', 'a'.repeat(5000), 'fuck '.repeat(300), '',
  ...WORDS, ...WORDS.map((w) => w.toUpperCase()), ...WORDS.map((w) => w.split('').join(w.length > 4 ? '' : '')),
]

const R = rng(0x7011)
const RANDOM = Array.from({ length: 2500 }, () => randomText(R))
const DISGUISED = WORDS.flatMap((w) => Array.from({ length: 40 }, () => `so ${disguise(w, R)} then`))
const ALL = [...FIXTURES, ...ADVERSARIAL, ...RANDOM, ...DISGUISED]

// ---- the lexicon -----------------------------------------------------------------------------

/** src/classify/lexicon.ts before the prefilter: obscenity's matcher on every text. */
const lexiconBefore = (text: string) => lexiconOfMatches(obscenity.getAllMatches(text))

test('GW-6: the lexicon prefilter never skips a text obscenity matches, and the lexicon screen is unchanged', () => {
  assert.ok(LOOKALIKES.get('a')!.length > 5 && LOOKALIKES.get('o')!.length > 5, 'the look-alike table is populated')
  let skipped = 0
  let matched = 0
  for (const text of ALL) {
    const matches = obscenity.getAllMatches(text)
    if (matches.length > 0) matched++
    if (!lexiconMayMatch(text)) {
      skipped++
      assert.deepEqual(matches, [], `prefilter skipped a match: ${JSON.stringify(text)}`)
    }
    assert.deepEqual(lexiconScreen(text), lexiconBefore(text), JSON.stringify(text))
  }
  // The test means something only if both kinds of text are there in numbers.
  assert.ok(matched > 500, `texts obscenity matches: ${matched}`)
  assert.ok(skipped > 500, `texts the prefilter skips: ${skipped}`)
})

test('GW-6: the lexicon prefilter reads the very string obscenity transforms', async () => {
  const { transformerPipeline } = await import('../../src/classify/lexicon.ts')
  const { englishRecommendedBlacklistMatcherTransformers } = await import('obscenity')
  const transformed = transformerPipeline(englishRecommendedBlacklistMatcherTransformers)
  for (const text of ALL) assert.equal(transformed(text), applyTransformers(text), JSON.stringify(text))
  // Every code unit on its own, lone surrogates included.
  for (let cp = 0; cp < 0x10000; cp += 1) {
    const ch = String.fromCharCode(cp)
    assert.equal(transformed(ch), applyTransformers(ch), `U+${cp.toString(16)}`)
  }
})

// ---- the phrase rules' normalisation ---------------------------------------------------------

/** normaliseForRules as it was: a lookbehind for leet digits, every whitespace run rewritten. */
const normaliseBefore = (text: string) => text.normalize('NFKC').toLowerCase()
  .replace(/[\u2018\u2019\u02bc]/g, "'").replace(/[\u201c\u201d]/g, '"')
  .replace(/(?<=[a-z])[013457@$](?=[a-z])/g, (c) => ({ '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', $: 's' })[c] ?? c)
  .replace(/\s+/g, ' ')

test('GW-6: normaliseForRules gives the same text as before', () => {
  const r = rng(0x6e6f)
  const extra = ['k1ll', 'b0mb', 'mys3lf', 'a1b3c5d', '1ab', 'ab1', 'a 1 b', 'a\t\tb', 'a \n b', ' ', '  ', '\u00a0', 'a \u00a0b', ' \t', '\t ', 'x  \t y', '\u2018\u2019\u201c\u201d\u02bc', 'ＫＩＬＬ', 'ǅ', 'İ', 'k$ll', 'm@ke', '$5', '@a']
  const randomWs = Array.from({ length: 3000 }, () => {
    let s = ''
    const n = Math.floor(r() * 60)
    for (let i = 0; i < n; i++) s += ['a', 'b', 'Z', '0', '1', '3', '4', '5', '7', '@', '$', ' ', '  ', '\t', '\n', '\r\n', '\u00a0', '\u2028', '\ufeff', '.', '\u2019'][Math.floor(r() * 21)]!
    return s
  })
  for (const text of [...ALL, ...extra, ...randomWs]) assert.equal(normaliseForRules(text), normaliseBefore(text), JSON.stringify(text))
})
