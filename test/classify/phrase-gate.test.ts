// The required-literal gate of the phrase rules (GW-6): each rule's regex runs only on a text that
// holds the literals its matches must contain. The gate may never skip a rule that would match,
// so these tests check it against the ungated matcher and every derived Need against real matches
// (generated from the patterns themselves, the labelled fixtures, and noise), prove the same
// checks catch a planted wrong Need (positive control), and pin the analyser on small patterns.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { LiteralScanner, literalsOf, NeedChecker, requiredLiterals, satisfies, type Need } from '../../src/classify/required-literals.ts'
import { matchPhraseRules, matchPhraseRulesUngated, MUST_NOT_MISS, normaliseForRules, PHRASE_RULES, phraseRuleNeed, type PhraseRule } from '../../src/classify/safety-rules.ts'
import { loadPrompts } from './fixture.ts'

const FULL = process.env['TOLLGATE_TEST_LEVEL'] === 'full'
const RUNS = FULL ? 20_000 : 1_500
const SEED = 6_2026

const FIXTURES = loadPrompts().map((c) => ({ id: c.id, text: normaliseForRules(c.prompt) }))

// ---- the checks (shared by the real gate and the planted wrong one) --------------------------

type NeedOf = (rule: PhraseRule) => Need | null
type Matcher = (text: string) => string[]

const globals = new Map<RegExp, RegExp>()

/** Every match of the rule's pattern in `text` (its `unless` aside). */
function matchesOf(rule: PhraseRule, text: string): string[] {
  let re = globals.get(rule.pattern)
  if (!re) globals.set(rule.pattern, (re = new RegExp(rule.pattern.source, 'g')))
  re.lastIndex = 0
  const out: string[] = []
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    out.push(m[0])
    if (m[0].length === 0) re.lastIndex++
  }
  return out
}

const contains = (text: string) => (literal: string) => text.includes(literal)

/**
 * What is wrong on `text`: a match of a rule that does not satisfy the rule's Need (checked on the
 * match alone, which is stricter than on the text), or a gated result that differs from the
 * ungated one.
 */
function gateProblems(text: string, rules: readonly PhraseRule[], needOf: NeedOf, gated: Matcher): string[] {
  const problems: string[] = []
  for (const rule of rules) {
    for (const m of matchesOf(rule, text)) {
      if (!satisfies(needOf(rule), contains(m))) problems.push(`${rule.id}: a match lacks its Need`)
    }
  }
  const want = matchPhraseRulesUngated(text, rules).map((h) => h.rule.id).join()
  const got = gated(text).join()
  if (got !== want) problems.push(`gated [${got}] ≠ ungated [${want}]`)
  return problems
}

const realGate = (rules: readonly PhraseRule[]): Matcher => (text) => matchPhraseRules(text, rules).map((h) => h.rule.id)

/** The gate built the real way from other Needs (to plant a wrong one). */
function gateWith(rules: readonly PhraseRule[], needOf: NeedOf): Matcher {
  const checker = new NeedChecker(rules.map(needOf))
  return (text) => {
    const may = checker.check(text)
    return rules.filter((r, k) => may[k] === 1 && matchPhraseRulesUngated(text, [r]).length > 0).map((r) => r.id)
  }
}

// ---- generated texts -------------------------------------------------------------------------

/**
 * A pattern fast-check can generate strings from (it has no \b or lookarounds): \b becomes a
 * space, lookarounds go, \w \s \d and negated classes become plain ones, and it is anchored. Not
 * every generated string matches the real pattern; those that do are what the checks look at.
 */
function generable(src: string): RegExp {
  let out = ''
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!
    if (c === '\\') {
      const e = src[++i]!
      out += e === 'b' ? ' ' : e === 'B' ? '' : e === 'w' ? '[a-z]' : e === 's' ? ' ' : e === 'd' ? '[0-9]' : `\\${e}`
    } else if (c === '[') {
      let j = i + 1
      while (src[j] !== ']') j += src[j] === '\\' ? 2 : 1
      out += src[i + 1] === '^' ? "[a-z ']" : src.slice(i, j + 1)
      i = j
    } else if (/^\(\?<?[=!]/.test(src.slice(i, i + 4))) {
      let depth = 0
      for (; i < src.length; i++) {
        if (src[i] === '\\') i++
        else if (src[i] === '(') depth++
        else if (src[i] === ')' && --depth === 0) break
      }
    } else out += c
  }
  return new RegExp(`^(?:${out})$`)
}

const generators = new Map<PhraseRule, fc.Arbitrary<string>>()
const fromRule = (rule: PhraseRule): fc.Arbitrary<string> => {
  let arb = generators.get(rule)
  if (!arb) generators.set(rule, (arb = fc.stringMatching(generable(rule.pattern.source)).map((s) => s.replace(/ {2,}/g, ' ').trim())))
  return arb
}

/** Words and literals of the rules (patterns and `unless`), and their Needs' literals. */
const VOCABULARY: readonly string[] = (() => {
  const words = new Set<string>()
  for (const rule of PHRASE_RULES) {
    for (const re of [rule.pattern, rule.unless]) for (const w of re?.source.match(/[a-z][a-z' -]*[a-z]/g) ?? []) words.add(w)
    for (const lit of literalsOf(phraseRuleNeed(rule))) words.add(lit)
  }
  return [...words]
})()

const SEPARATORS = [' ', ' ', ' ', '', '. ', ', ', '? ', "'", '-', '\n', '  ']

/** A text of pieces: strings generated from `rules`, fixture prompts (whole or cut), rule words, noise. */
function textOf(rules: readonly PhraseRule[]): fc.Arbitrary<string> {
  const piece = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...rules).chain(fromRule) },
    { weight: 2, arbitrary: fc.constantFrom(...FIXTURES.map((f) => f.text)) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...FIXTURES.map((f) => f.text)), fc.nat(), fc.nat()).map(([t, a, b]) => t.slice(Math.min(a, b) % (t.length + 1), Math.max(a, b) % (t.length + 1))) },
    { weight: 4, arbitrary: fc.constantFrom(...VOCABULARY) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
  )
  return fc.array(fc.tuple(piece, fc.constantFrom(...SEPARATORS)), { minLength: 1, maxLength: 10 })
    .chain((parts) => fc.boolean().map((normalise) => {
      const text = parts.map(([p, s]) => p + s).join('')
      return normalise ? normaliseForRules(text) : text
    }))
}

// ---- 1. soundness by property ----------------------------------------------------------------

test('GW-6: the phrase-rule gate never skips a rule that matches (property: gated = ungated, every match holds its Need)', (t) => {
  const gated = realGate(PHRASE_RULES)
  const checker = new NeedChecker(PHRASE_RULES.map(phraseRuleNeed))
  const matched = new Set<string>()
  fc.assert(fc.property(textOf(PHRASE_RULES), (text) => {
    assert.deepEqual(gateProblems(text, PHRASE_RULES, phraseRuleNeed, gated), [])
    for (const rule of PHRASE_RULES) if (matchesOf(rule, text).length > 0) matched.add(rule.id)
    // the checker (one pass, short literals counted as present, long ones cut) never rejects a
    // text that satisfies a Need
    const ok = checker.check(text)
    PHRASE_RULES.forEach((rule, k) => {
      if (satisfies(phraseRuleNeed(rule), contains(text))) assert.equal(ok[k], 1, rule.id)
    })
  }), { numRuns: RUNS, seed: SEED })
  // the texts exercise every rule (the checks above look at real matches)
  assert.deepEqual(PHRASE_RULES.filter((r) => !matched.has(r.id)).map((r) => r.id), [])
  t.diagnostic(`${RUNS} texts, every one of the ${PHRASE_RULES.length} rules matched in some`)
})

test('GW-6: the literal scanner finds exactly the literals that occur (property, against includes)', () => {
  const unit = fc.constantFrom('a', 'b', 'c', ' ', "'", 'é')
  fc.assert(fc.property(fc.uniqueArray(fc.string({ unit, minLength: 1, maxLength: 5 }), { maxLength: 30 }), fc.string({ unit, maxLength: 60 }), (literals, text) => {
    const found = new LiteralScanner(literals).scan(text)
    literals.forEach((lit, k) => assert.equal(found[k] === 1, text.includes(lit), lit))
  }), { numRuns: RUNS, seed: SEED })
})

// ---- 2. every rule against the fixtures ------------------------------------------------------

/** Fixture ids where a match of the rule does not satisfy `need`. */
function fixtureMisses(rule: PhraseRule, need: Need | null): string[] {
  return FIXTURES.filter((f) => matchesOf(rule, f.text).some((m) => !satisfies(need, contains(m)))).map((f) => f.id)
}

test('GW-6: every fixture text a rule matches holds that rule\'s Need, and the gate changes no fixture result', (t) => {
  let gated = 0
  let positives = 0
  for (const rule of PHRASE_RULES) {
    const need = phraseRuleNeed(rule)
    if (need !== null) gated++
    if (FIXTURES.some((f) => matchesOf(rule, f.text).length > 0)) positives++
    assert.deepEqual(fixtureMisses(rule, need), [], rule.id)
  }
  for (const f of FIXTURES) assert.deepEqual(gateProblems(f.text, PHRASE_RULES, phraseRuleNeed, realGate(PHRASE_RULES)), [], f.id)
  assert.ok(positives >= PHRASE_RULES.length / 2, `only ${positives} rules match a fixture`)
  t.diagnostic(`${gated} of ${PHRASE_RULES.length} rules gated, ${PHRASE_RULES.length - gated} always run; ${positives} rules match a fixture prompt`)
})

const PER_RULE = Number(process.env['TOLLGATE_GATE_SAMPLES'] ?? (FULL ? 20_000 : 2_000))

/**
 * Matches of strings generated from the rule's own pattern: how many, and how many lack `need`
 * (or, with a checker, where the checker rejected a text holding a match).
 */
function generatedMisses(rule: PhraseRule, need: Need | null, seed: number, checker?: { readonly of: NeedChecker; readonly k: number }): { matches: number; misses: number } {
  let matches = 0
  let misses = 0
  for (const text of fc.sample(fromRule(rule), { numRuns: PER_RULE, seed })) {
    const ms = matchesOf(rule, text)
    for (const m of ms) {
      matches++
      if (!satisfies(need, contains(m))) misses++
    }
    if (checker && ms.length > 0 && checker.of.check(text)[checker.k] !== 1) misses++
  }
  return { matches, misses }
}

test('GW-6: every string generated from a rule\'s own pattern that matches it holds that rule\'s Need and passes the gate', (t) => {
  const checker = new NeedChecker(PHRASE_RULES.map(phraseRuleNeed))
  let matches = 0
  for (const [k, rule] of PHRASE_RULES.entries()) {
    const r = generatedMisses(rule, phraseRuleNeed(rule), SEED + k, { of: checker, k })
    assert.equal(r.misses, 0, rule.id)
    assert.ok(r.matches >= PER_RULE / 2, `${rule.id}: only ${r.matches} of ${PER_RULE} generated strings match`)
    matches += r.matches
  }
  t.diagnostic(`${matches} matches generated from the ${PHRASE_RULES.length} patterns checked`)
})

// ---- 3. positive control ---------------------------------------------------------------------

/** `need` without the alternative `literal` (a wrong Need, as a buggy analyser would give). */
function without(need: Need, literal: string): Need {
  if (typeof need === 'string') return need
  if ('and' in need) return { and: need.and.map((n) => without(n, literal)) }
  return { or: need.or.filter((n) => n !== literal).map((n) => without(n, literal)) }
}

test('GW-6: positive control: a Need missing one alternative is caught by the same checks', () => {
  // A must-not-miss rule with a fixture positive, and the literal of its Need that positive holds.
  const rule = PHRASE_RULES.find((r) => r.id === 's11.kill_myself')!
  assert.ok(MUST_NOT_MISS.includes(rule.code))
  const need = phraseRuleNeed(rule)!
  const positive = FIXTURES.find((f) => matchesOf(rule, f.text).length > 0)
  assert.ok(positive, 'the rule has a fixture positive')
  const literal = [...literalsOf(need)].find((l) => matchesOf(rule, positive.text).some((m) => m.includes(l)))!
  assert.ok(literal)
  const wrong: NeedOf = (r) => (r === rule ? without(need, literal) : phraseRuleNeed(r))
  assert.notDeepEqual(wrong(rule), need)

  // check 2: the fixtures; check 2b: strings generated from the pattern
  assert.ok(fixtureMisses(rule, wrong(rule)).includes(positive.id))
  assert.ok(generatedMisses(rule, wrong(rule), SEED).misses > 0)
  // check 1: the property, on texts generated the same way (from this rule)
  const wrongGate = gateWith([rule], wrong)
  const run = fc.check(fc.property(textOf([rule]), (text) => {
    assert.deepEqual(gateProblems(text, [rule], wrong, wrongGate), [])
  }), { numRuns: RUNS, seed: SEED })
  assert.ok(run.failed, 'the property finds the planted wrong Need')
  // … also by comparing results alone (gated against ungated)
  const byResults = fc.check(fc.property(textOf([rule]), (text) => {
    assert.deepEqual(gateProblems(text, [rule], phraseRuleNeed, wrongGate), [])
  }), { numRuns: RUNS, seed: SEED })
  assert.ok(byResults.failed, 'the results differ with the planted wrong Need')
  // and the same property holds for the real Need on those texts
  fc.assert(fc.property(textOf([rule]), (text) => {
    assert.deepEqual(gateProblems(text, [rule], phraseRuleNeed, realGate([rule])), [])
  }), { numRuns: Math.min(RUNS, 500), seed: SEED })
})

// ---- 4. the analyser on small patterns -------------------------------------------------------

const lits = (re: RegExp): string[] | null => {
  const need = requiredLiterals(re)
  return need === null ? null : [...literalsOf(need)].sort()
}

test('GW-6: the analyser: literals run across groups, optional parts need nothing, lookarounds are not required', () => {
  assert.deepEqual(requiredLiterals(/\bab(?:cd|ef)g\b/), { or: ['abcdg', 'abefg'] })
  assert.equal(requiredLiterals(/x?y/), 'y')
  assert.equal(requiredLiterals(/(?:a|b*)/), null)
  assert.equal(requiredLiterals(/(?:abc|\w+)/), null)
  // what a lookaround looks at is outside the match (or must not be there)
  assert.equal(requiredLiterals(/(?=abc)ab/), 'ab')
  assert.equal(requiredLiterals(/ab(?!cde)/), 'ab')
  assert.equal(requiredLiterals(/(?<=xyz)ab/), 'ab')
  assert.equal(requiredLiterals(/(?<!xyz)ab(?=c)/), 'ab')
  // quantifiers: a minimum of 0 needs nothing, a minimum ≥ 1 keeps the child's Need
  assert.equal(requiredLiterals(/(?:abc){0,3}/), null)
  assert.equal(requiredLiterals(/(?:abc){0,3}de/), 'de')
  assert.deepEqual(requiredLiterals(/(?:ab\w*yz){2,}/), requiredLiterals(/ab\w*yz/))
  assert.deepEqual(requiredLiterals(/ab\w*yz/), { and: ['ab', 'yz'] })
  assert.equal(requiredLiterals(/(?:abc){2,}/), 'abcabc')
  assert.equal(requiredLiterals(/(?:abc)+?d/), 'abcd')
  assert.deepEqual(lits(/(?:x|y)+z/), ['xz', 'yz'])
  // small classes expand, others need nothing; \b ends a literal run
  assert.deepEqual(lits(/self[- ]?harm/), ['self harm', 'self-harm', 'selfharm'])
  assert.deepEqual(lits(/fianc[ée]e?/), ['fiance', 'fiancé'])
  assert.equal(requiredLiterals(/[^a]bc/), 'bc')
  assert.deepEqual(requiredLiterals(/ab\bcd/), { and: ['ab', 'cd'] })
  assert.deepEqual(requiredLiterals(/kill\w+myself/), { and: ['kill', 'myself'] })
  assert.deepEqual(lits(/how'?d/), ["how'd", 'howd'])
  assert.deepEqual(lits(/\/dev\/tcp\/\d|rm -rf \//), ['/dev/tcp/', 'rm -rf /'])
  // an alternation needs one of its branches
  assert.deepEqual(requiredLiterals(/\bfoo\w*bar|\bbaz\b/), { or: ['baz', { and: ['foo', 'bar'] }] })
})

test('GW-6: the analyser gives up (always run) on what it does not understand', () => {
  assert.equal(requiredLiterals(/abc/i), null)
  assert.equal(requiredLiterals(/abc/u), null)
  assert.equal(requiredLiterals(/(a)bc\1/), null)
  assert.equal(requiredLiterals(new RegExp(String.raw`\p{L}abc`)), null)
  assert.equal(requiredLiterals(/\x41bc/), null)
  assert.equal(requiredLiterals(new RegExp('a{,3}bc')), null)
  assert.equal(requiredLiterals(new RegExp('ab]c')), null)
  // a rule whose pattern gives up is still run
  const rule: PhraseRule = { id: 'test.give_up', code: 'S1', severity: 'high', pattern: /(kill)\s+\1/ }
  assert.equal(phraseRuleNeed(rule), null)
  assert.deepEqual(matchPhraseRules('kill kill', [rule]).map((h) => h.rule.id), ['test.give_up'])
})

test('GW-6: a rules array changed after its gate was built gets a new gate', () => {
  const a: PhraseRule = { id: 'test.a', code: 'S1', severity: 'high', pattern: /\bapple pie\b/ }
  const b: PhraseRule = { id: 'test.b', code: 'S1', severity: 'high', pattern: /\bbanana split\b/ }
  const rules: PhraseRule[] = [a]
  assert.deepEqual(matchPhraseRules('a banana split', rules), [])
  rules[0] = b
  assert.deepEqual(matchPhraseRules('a banana split', rules).map((h) => h.rule.id), ['test.b'])
  rules.push(a)
  assert.deepEqual(matchPhraseRules('apple pie and a banana split', rules).map((h) => h.rule.id), ['test.b', 'test.a'])
})
