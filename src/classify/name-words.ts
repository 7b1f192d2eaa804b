import { readFileSync } from 'node:fs'

/**
 * compromise's own lexicon, split for the name prefilter (pii.ts `nameCandidates`): lower-cased
 * single words it knows as names (first names, last names, honorifics), and words it knows only as
 * something else (pronouns, weekdays, cities, …).
 *
 * The split is generated into name-words.json (scripts/build-name-words.ts) instead of being
 * read from compromise at start: compromise then loads only where names are actually found (the
 * classifier's worker), not in the main thread too (~40 MB). A test fails if compromise's lexicon
 * and the file disagree.
 */
export interface NameWordsFile {
  /** The compromise version the words were read from. */
  readonly compromise: string
  readonly names: readonly string[]
  readonly other: readonly string[]
}

export const NAME_WORDS_URL = new URL('./name-words.json', import.meta.url)

/** The split of a compromise lexicon (`nlp.model().one.lexicon`), each list sorted. */
export function splitLexicon(lexicon: Readonly<Record<string, string | readonly string[]>>): { names: string[]; other: string[] } {
  const names: string[] = []
  const other: string[] = []
  for (const [word, tags] of Object.entries(lexicon)) {
    if (word.includes(' ')) continue
    if ((typeof tags === 'string' ? [tags] : tags).some((t) => /Name$|^Person$|^Honorific$/.test(t))) names.push(word)
    else other.push(word)
  }
  return { names: names.sort(), other: other.sort() }
}

let words: { readonly names: ReadonlySet<string>; readonly other: ReadonlySet<string> } | undefined

/** The two word sets, read from name-words.json on first use. */
export function nameWords(): { readonly names: ReadonlySet<string>; readonly other: ReadonlySet<string> } {
  if (!words) {
    const file = JSON.parse(readFileSync(NAME_WORDS_URL, 'utf8')) as NameWordsFile
    words = { names: new Set(file.names), other: new Set(file.other) }
  }
  return words
}
