// Builds src/classify/name-words.json from compromise's lexicon (see src/classify/name-words.ts):
//   node --import tsx scripts/build-name-words.ts
// Run it after upgrading compromise (test/classify/name-words.test.ts fails until you do). Commit the result.
import { readFileSync, writeFileSync } from 'node:fs'
import nlp from 'compromise'
import { NAME_WORDS_URL, splitLexicon, type NameWordsFile } from '../src/classify/name-words.ts'

const version = (JSON.parse(readFileSync(new URL('../node_modules/compromise/package.json', import.meta.url), 'utf8')) as { version: string }).version
const { names, other } = splitLexicon((nlp.model() as { one: { lexicon: Record<string, string | string[]> } }).one.lexicon)
const file: NameWordsFile = { compromise: version, names, other }
writeFileSync(NAME_WORDS_URL, `${JSON.stringify(file)}\n`)
process.stdout.write(`name-words.json: ${names.length} name words, ${other.length} other words (compromise ${version})\n`)
