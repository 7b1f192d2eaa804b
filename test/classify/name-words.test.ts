import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import nlp from 'compromise'
import { NAME_WORDS_URL, nameWords, splitLexicon, type NameWordsFile } from '../../src/classify/name-words.ts'

/**
 * GW-7: the name prefilter reads compromise's lexicon from name-words.json, so the main thread
 * need not load compromise. The file must be exactly what the installed compromise's lexicon
 * gives: after an upgrade this fails until `node --import tsx scripts/build-name-words.ts` is run.
 */
test('GW-7: name-words.json is the installed compromise lexicon, split into name words and other words', () => {
  const file = JSON.parse(readFileSync(NAME_WORDS_URL, 'utf8')) as NameWordsFile
  const installed = (JSON.parse(readFileSync(new URL('../../node_modules/compromise/package.json', import.meta.url), 'utf8')) as { version: string }).version
  assert.equal(file.compromise, installed, 'compromise was upgraded: run node --import tsx scripts/build-name-words.ts')
  const live = splitLexicon((nlp.model() as { one: { lexicon: Record<string, string | string[]> } }).one.lexicon)
  assert.deepEqual(file.names, live.names, 'name words differ from compromise: run node --import tsx scripts/build-name-words.ts')
  assert.deepEqual(file.other, live.other, 'other words differ from compromise: run node --import tsx scripts/build-name-words.ts')
  // The split means something: known first names on one side, ordinary words on the other.
  const { names, other } = nameWords()
  for (const w of ['john', 'maria', 'smith']) assert.ok(names.has(w), w)
  for (const w of ['monday', 'you', 'paris']) assert.ok(other.has(w) && !names.has(w), w)
})

test('GW-7: splitLexicon keeps single words only and sorts tags into names (…Name, Person, Honorific) and the rest', () => {
  assert.deepEqual(splitLexicon({ jane: 'FirstName', dr: ['Honorific', 'Abbreviation'], doe: ['LastName'], 'new york': 'City', lisbon: 'City', bob: 'MaleName', her: ['Pronoun'], x: 'Person' }),
    { names: ['bob', 'doe', 'dr', 'jane', 'x'], other: ['her', 'lisbon'] })
})
