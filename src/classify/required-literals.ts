/**
 * Required literals of a regular expression (GW-6): a condition on a text, over substrings, that
 * every text holding a match of the pattern satisfies. A text that fails it cannot hold a match,
 * so the phrase rules skip the rule's regex on it without changing any result.
 *
 * The condition (a Need) is derived from `pattern.source` by a small analyser that knows the subset
 * of syntax the phrase rules use. Soundness comes first: anything it does not understand
 * (backreferences, unknown escapes, the `i`, `u` and `v` flags, modifiers, an Annex B literal `{`)
 * gives null for the whole pattern, meaning "nothing is known, always run it". A Need may be weaker
 * than the pattern (that costs only speed), never stronger.
 *
 * Each node of the pattern gets (after Russ Cox's trigram index for Google Code Search, with whole
 * strings for trigrams):
 * - exact: every string the node can match, when that set is finite and small;
 * - prefix / suffix: every match starts / ends with one of these ([''] when nothing is known);
 * - need: a condition every match of the node satisfies, or null.
 * A sequence needs what each of its parts needs, and the strings where a part's suffix meets the
 * next part's prefix, so literals run across groups (`ab(?:cd|ef)g` needs abcdg or abefg). An
 * alternation needs one of its branches' needs. A part that may match nothing (`x?`, `x*`,
 * `x{0,3}`) needs nothing. Zero-width assertions (`\b`, `^`, `$`, lookarounds) consume nothing, so
 * joining literals across them would be sound too, but they end a literal run to keep the analysis
 * easy to check; what a lookaround looks at is never needed (a negative one must not match, and a
 * positive one reads text outside the match).
 */

/**
 * A condition on a text: a string is "the text contains it"; `and` / `or` combine conditions.
 * Every match of the pattern it was derived from satisfies it (the match alone, not only its text).
 */
export type Need = string | { readonly and: readonly Need[] } | { readonly or: readonly Need[] }

interface Info {
  readonly exact: readonly string[] | null
  readonly prefix: readonly string[]
  readonly suffix: readonly string[]
  readonly need: Need | null
}

/** Largest exact / prefix / suffix set kept (a cross product beyond it is dropped, which is sound). */
const MAX_SET = 64
/** Largest character class expanded into its characters (`[sz]`, `[- ]`, `[1-9]`). */
const MAX_CLASS = 10
/** Largest finite repeat count expanded (`x{2,3}` of an exact x). */
const MAX_REPEAT = 3

const NOTHING: readonly string[] = ['']
/** A node that consumes something unknown (`.`, `\w`, `[^.?!]`, `x*`). */
const ANY: Info = { exact: null, prefix: NOTHING, suffix: NOTHING, need: null }
/** A zero-width assertion: consumes nothing, but ends a literal run (see the header). */
const ASSERTION: Info = ANY
const EMPTY: Info = { exact: NOTHING, prefix: NOTHING, suffix: NOTHING, need: null }

class Unsupported extends Error {}

/** The Need of `re`, or null when nothing is known and the pattern must always run. */
export function requiredLiterals(re: RegExp): Need | null {
  // i: a literal could match in another case; u/v: other escape and class syntax.
  if (/[iuv]/.test(re.flags)) return null
  try {
    return new Parser(re.source).parse().need
  } catch (e) {
    if (e instanceof Unsupported) return null
    throw e
  }
}

/** Whether `text` satisfies `need` (null: nothing is known, so it may match). */
export function satisfies(need: Need | null, has: (literal: string) => boolean): boolean {
  if (need === null) return true
  if (typeof need === 'string') return has(need)
  if ('and' in need) return need.and.every((n) => satisfies(n, has))
  return need.or.some((n) => satisfies(n, has))
}

/** Every distinct literal of `need`. */
export function literalsOf(need: Need | null, out: Set<string> = new Set()): Set<string> {
  if (need === null) return out
  if (typeof need === 'string') out.add(need)
  else for (const n of 'and' in need ? need.and : need.or) literalsOf(n, out)
  return out
}

// ---- sets and conditions ---------------------------------------------------------------------

const unique = (xs: Iterable<string>): string[] => [...new Set(xs)]

/** Every a + b, or null when there would be more than MAX_SET. */
function cross(a: readonly string[], b: readonly string[]): string[] | null {
  if (a.length * b.length > MAX_SET) return null
  const out: string[] = []
  for (const x of a) for (const y of b) out.push(x + y)
  return unique(out)
}

/** A Need that is one string or an `or` of strings. */
const flat = (n: Need): readonly string[] | null => (typeof n === 'string' ? [n] : 'or' in n && n.or.every((x) => typeof x === 'string') ? (n.or as string[]) : null)

/**
 * "Contains one of `set`", without redundant members (if t is a substring of s, a text containing
 * s contains t, so s adds nothing). Null when '' is a member: every text contains it.
 */
function anyOf(set: readonly string[] | null): Need | null {
  if (!set || set.length === 0 || set.includes('')) return null
  const sorted = unique(set).sort((a, b) => a.length - b.length || (a < b ? -1 : 1))
  const kept: string[] = []
  for (const s of sorted) if (!kept.some((t) => s.includes(t))) kept.push(s)
  return kept.length === 1 ? kept[0]! : { or: kept }
}

/** Flat set `b` implies flat set `a` when each member of b contains a member of a. */
const implies = (b: readonly string[], a: readonly string[]): boolean => b.every((s) => a.some((t) => s.includes(t)))

/** All of `needs` (nulls are "nothing known" and drop out; a flat need implied by another goes). */
function and(...needs: (Need | null)[]): Need | null {
  const parts: Need[] = []
  for (const n of needs) {
    if (n === null) continue
    if (typeof n !== 'string' && 'and' in n) parts.push(...n.and)
    else parts.push(n)
  }
  const flats = parts.map(flat)
  const kept = parts.filter((_, k) => {
    const a = flats[k]
    if (!a) return true
    // drop a when another (earlier, for equal ones) flat part implies it
    return !flats.some((b, j) => j !== k && b && implies(b, a) && (!implies(a, b) || j < k))
  })
  return kept.length === 0 ? null : kept.length === 1 ? kept[0]! : { and: kept }
}

/** One of `needs`: nothing is known if one of them is nothing known. */
function or(needs: readonly (Need | null)[]): Need | null {
  const strings: string[] = []
  const rest: Need[] = []
  for (const n of needs) {
    if (n === null) return null
    if (typeof n !== 'string' && 'or' in n) {
      for (const m of n.or) (typeof m === 'string' ? strings : rest).push(m)
    } else if (typeof n === 'string') strings.push(n)
    else rest.push(n)
  }
  const s = anyOf(strings)
  if (rest.length === 0) return s
  const all = s === null ? rest : [...(typeof s === 'string' ? [s] : (s as { or: Need[] }).or), ...rest]
  return all.length === 1 ? all[0]! : { or: all }
}

function exactInfo(exact: readonly string[]): Info {
  return { exact, prefix: exact, suffix: exact, need: anyOf(exact) }
}

function concat(x: Info, y: Info): Info {
  if (x.exact && y.exact) {
    const e = cross(x.exact, y.exact)
    if (e) return exactInfo(e)
  }
  const prefix = x.exact ? cross(x.exact, y.prefix) ?? x.exact : x.prefix
  const suffix = y.exact ? cross(x.suffix, y.exact) ?? y.exact : y.suffix
  return { exact: null, prefix, suffix, need: and(x.need, y.need, anyOf(cross(x.suffix, y.prefix)), anyOf(prefix), anyOf(suffix)) }
}

function alternate(branches: readonly Info[]): Info {
  const all = (pick: (b: Info) => readonly string[] | null): string[] | null => {
    const out: string[] = []
    for (const b of branches) {
      const s = pick(b)
      if (!s) return null
      out.push(...s)
    }
    return unique(out)
  }
  const exact = all((b) => b.exact)
  if (exact && exact.length <= MAX_SET) return exactInfo(exact)
  const prefix = all((b) => b.prefix)!
  const suffix = all((b) => b.suffix)!
  return {
    exact: null,
    prefix: prefix.includes('') || prefix.length > MAX_SET ? NOTHING : prefix,
    suffix: suffix.includes('') || suffix.length > MAX_SET ? NOTHING : suffix,
    need: and(or(branches.map((b) => b.need)), anyOf(prefix), anyOf(suffix)),
  }
}

/** Each string of `set` repeated k times for k in [min, max], or null when too many. */
function powers(set: readonly string[], min: number, max: number): string[] | null {
  let out: string[] = []
  let power: string[] | null = [...NOTHING]
  for (let k = 0; k <= max; k++) {
    if (k >= min) out = unique([...out, ...power])
    if (out.length > MAX_SET) return null
    if (k < max && !(power = cross(power, set))) return null
  }
  return out
}

function repeat(x: Info, min: number, max: number): Info {
  if (max === 0) return EMPTY
  if (x.exact && max <= MAX_REPEAT) {
    const e = powers(x.exact, min, max)
    if (e) return exactInfo(e)
  }
  // x{0,n}: may match nothing, so nothing is needed.
  if (min === 0) return ANY
  // x{min,}: starts with min copies of x and ends with min copies of x.
  const prefix = x.exact ? powers(x.exact, min, min) ?? x.exact : x.prefix
  const suffix = x.exact ? prefix : x.suffix
  return { exact: null, prefix, suffix, need: and(x.need, anyOf(prefix)) }
}

// ---- the parser ------------------------------------------------------------------------------

/** Escapes of control characters. */
const CONTROL: Readonly<Record<string, string>> = { n: '\n', r: '\r', t: '\t', f: '\f', v: '\v' }
const isWordChar = (c: string): boolean => /[A-Za-z0-9_]/.test(c)

/**
 * A recursive-descent parser of the non-unicode RegExp syntax the rules use, computing Info
 * bottom-up. It throws Unsupported on anything outside that subset.
 */
class Parser {
  private i = 0

  constructor(private readonly src: string) {}

  parse(): Info {
    const info = this.alternation()
    if (this.i !== this.src.length) throw new Unsupported()
    return info
  }

  private peek(): string | undefined {
    return this.src[this.i]
  }

  private alternation(): Info {
    const branches = [this.sequence()]
    while (this.peek() === '|') {
      this.i++
      branches.push(this.sequence())
    }
    return branches.length === 1 ? branches[0]! : alternate(branches)
  }

  private sequence(): Info {
    let info = EMPTY
    for (let c = this.peek(); c !== undefined && c !== '|' && c !== ')'; c = this.peek()) {
      info = concat(info, this.quantified(this.atom()))
    }
    return info
  }

  private atom(): Info {
    const c = this.peek()!
    switch (c) {
      case '(':
        return this.group()
      case '[':
        return this.charClass()
      case '\\':
        return this.escape()
      case '.':
        this.i++
        return ANY
      case '^':
      case '$':
        this.i++
        return ASSERTION
      // a quantifier without an atom, or an Annex B literal brace or bracket: not in our subset
      case '*':
      case '+':
      case '?':
      case '{':
      case '}':
      case ']':
        throw new Unsupported()
      default:
        this.i++
        return exactInfo([c])
    }
  }

  private group(): Info {
    const src = this.src
    this.i++
    let assertion = false
    if (src.startsWith('?:', this.i)) this.i += 2
    else if (src.startsWith('?=', this.i) || src.startsWith('?!', this.i)) {
      this.i += 2
      assertion = true
    } else if (src.startsWith('?<=', this.i) || src.startsWith('?<!', this.i)) {
      this.i += 3
      assertion = true
    } else if (src.startsWith('?<', this.i)) {
      const end = src.indexOf('>', this.i)
      if (end < 0) throw new Unsupported()
      this.i = end + 1 // a named capture group
    } else if (this.peek() === '?') throw new Unsupported() // modifiers such as (?i:…)
    const inner = this.alternation()
    if (this.peek() !== ')') throw new Unsupported()
    this.i++
    return assertion ? ASSERTION : inner
  }

  private escape(): Info {
    const c = this.src[this.i + 1]
    if (c === undefined) throw new Unsupported()
    this.i += 2
    if (c === 'b' || c === 'B') return ASSERTION
    if ('dDwWsS'.includes(c)) return ANY
    if (CONTROL[c]) return exactInfo([CONTROL[c]])
    // backreferences, \k<name>, \x, \u, \c, \p, \0 and Annex B letter escapes
    if (isWordChar(c)) throw new Unsupported()
    return exactInfo([c]) // an escaped punctuation character stands for itself
  }

  /** One character of a class, or null for a class escape (\d, \w, …). */
  private classAtom(): string | null {
    const c = this.peek()
    if (c === undefined) throw new Unsupported()
    this.i++
    if (c !== '\\') return c
    const e = this.peek()
    if (e === undefined) throw new Unsupported()
    this.i++
    if ('dDwWsS'.includes(e)) return null
    if (e === 'b') return '\b' // backspace inside a class
    if (CONTROL[e]) return CONTROL[e]
    if (isWordChar(e)) throw new Unsupported()
    return e
  }

  /** A class is exact when it is a small positive set of characters; anything else is ANY. */
  private charClass(): Info {
    this.i++
    const negated = this.peek() === '^'
    if (negated) this.i++
    const chars = new Set<string>()
    let open = negated
    // In JavaScript the first unescaped ']' ends a class, even right after '[' ('[]' is empty).
    while (this.peek() !== ']') {
      const a = this.classAtom()
      const next = this.src[this.i + 1]
      if (this.peek() === '-' && next !== ']' && next !== undefined) {
        this.i++
        const b = this.classAtom()
        if (a === null || b === null) {
          open = true // Annex B: a dash next to a class escape is a literal dash
          continue
        }
        const lo = a.charCodeAt(0)
        const hi = b.charCodeAt(0)
        if (hi < lo) throw new Unsupported()
        if (hi - lo >= MAX_CLASS) open = true
        else for (let k = lo; k <= hi; k++) chars.add(String.fromCharCode(k))
      } else if (a === null) open = true
      else chars.add(a)
    }
    this.i++
    if (open || chars.size === 0 || chars.size > MAX_CLASS) return ANY
    return exactInfo([...chars])
  }

  private quantified(atom: Info): Info {
    const c = this.peek()
    let min: number
    let max: number
    if (c === '*') [min, max] = [0, Infinity]
    else if (c === '+') [min, max] = [1, Infinity]
    else if (c === '?') [min, max] = [0, 1]
    else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.i))
      if (!m) throw new Unsupported()
      min = Number(m[1])
      max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3])
      this.i += m[0].length - 1
    } else return atom
    this.i++
    if (this.peek() === '?') this.i++ // lazy: the same matches, found in another order
    const after = this.peek()
    if (after === '*' || after === '+' || after === '?' || after === '{') throw new Unsupported()
    return repeat(atom, min, max)
  }
}


// ---- checking many Needs in one pass over a text ---------------------------------------------

/**
 * Shortest literal looked for: a shorter one counts as present (only weakens a Need). A
 * one-character literal is in nearly every text, and the scanner reporting it at almost every
 * character tripled the scan cost (measured).
 */
const MIN_CHECKED = 2
/**
 * Longest literal looked for: a longer one is cut to its first MAX_CHECKED characters (a text that
 * contains a string contains its prefix). Measured on the fixtures: nearly the same rules pass the
 * gate as with whole literals, with half the automaton.
 */
const MAX_CHECKED = 10

/**
 * A compiled Need: `any` is the index of a set of literals (one of which must occur), `all` /
 * `one` need all / one of the parts. The scanner marks each set when one of its literals occurs,
 * so checking a set is one lookup however many literals it has.
 */
type Check = { readonly any: number } | { readonly all: readonly Check[] } | { readonly one: readonly Check[] }

class Compiler {
  readonly literals = new Map<string, number>()
  /** For each literal id, the sets it belongs to. */
  readonly setsOf: number[][] = []
  private readonly sets = new Map<string, number>()

  compile(need: Need | null): Check | null {
    if (need === null) return null
    if (typeof need === 'string') return this.anyOf([need])
    if ('and' in need) {
      const parts = need.and.map((n) => this.compile(n)).filter((c) => c !== null)
      return parts.length === 0 ? null : parts.length === 1 ? parts[0]! : { all: parts }
    }
    const strings = need.or.filter((n) => typeof n === 'string')
    const parts = need.or.filter((n) => typeof n !== 'string').map((n) => this.compile(n))
    if (parts.some((c) => c === null)) return null
    const any = strings.length > 0 ? this.anyOf(strings) : undefined
    if (any === null) return null
    const all = any ? [any, ...(parts as Check[])] : (parts as Check[])
    return all.length === 1 ? all[0]! : { one: all }
  }

  /** The set of `strings` as checked (null: a too short member, so it counts as present). */
  private anyOf(strings: readonly string[]): Check | null {
    if (strings.some((s) => s.length < MIN_CHECKED)) return null
    const ids = [...new Set(strings.map((s) => this.literal(s.slice(0, MAX_CHECKED))))].sort((a, b) => a - b)
    const key = ids.join(',')
    let set = this.sets.get(key)
    if (set === undefined) {
      set = this.sets.size
      this.sets.set(key, set)
      for (const id of ids) this.setsOf[id]!.push(set)
    }
    return { any: set }
  }

  private literal(s: string): number {
    let id = this.literals.get(s)
    if (id === undefined) {
      id = this.literals.size
      this.literals.set(s, id)
      this.setsOf.push([])
    }
    return id
  }
}

function holds(check: Check, found: Uint8Array): boolean {
  if ('any' in check) return found[check.any] === 1
  if ('all' in check) {
    for (const c of check.all) if (!holds(c, found)) return false
    return true
  }
  for (const c of check.one) if (holds(c, found)) return true
  return false
}

/**
 * Tells, in one pass over a text, which of a list of Needs the text may satisfy: an Aho-Corasick
 * automaton over all their literals. (Checking each literal with `includes` costs 0.1-0.5 µs per
 * KB of text, and the phrase rules have some 2,000 literals; the pass costs ~5 µs per KB.)
 */
export class NeedChecker {
  private readonly checks: readonly (Check | null)[]
  private readonly scanner: LiteralScanner
  private readonly ok: Uint8Array

  constructor(needs: readonly (Need | null)[]) {
    const compiler = new Compiler()
    this.checks = needs.map((n) => compiler.compile(n))
    this.scanner = new LiteralScanner([...compiler.literals.keys()], compiler.setsOf)
    this.ok = new Uint8Array(needs.length)
  }

  /**
   * ok[k] = 0 when `text` cannot satisfy needs[k], 1 when it may. The array is reused by the next
   * call: read it before checking again.
   */
  check(text: string): Uint8Array {
    const found = this.scanner.scan(text)
    const { checks, ok } = this
    for (let k = 0; k < checks.length; k++) {
      const c = checks[k]!
      ok[k] = c === null || holds(c, found) ? 1 : 0
    }
    return ok
  }
}

/**
 * An Aho-Corasick automaton: one pass over a text tells which of a fixed list of literals occur in
 * it. Each literal reports a list of tags (by default its own index); scan marks the tags reported.
 */
export class LiteralScanner {
  /** Alphabet index of each UTF-16 unit; 0 for a unit in no literal. */
  private readonly classOf: Uint8Array | Uint16Array
  /**
   * delta[row + class], row = state × alphabet size: the next state's row, or its bitwise NOT
   * (negative) when literals end in that state.
   */
  private readonly delta: Int32Array
  private readonly width: number
  /** The tags reported on entering each state: tags[outStart[s] … outStart[s + 1]). */
  private readonly outStart: Int32Array
  private readonly tags: Int32Array
  /** Tags of the empty literal, which every text contains. */
  private readonly always: readonly number[]
  private readonly found: Uint8Array

  constructor(readonly literals: readonly string[], tagsOf: readonly (readonly number[])[] = literals.map((_, k) => [k])) {
    const units = new Set<number>()
    for (const lit of literals) for (let k = 0; k < lit.length; k++) units.add(lit.charCodeAt(k))
    const classOf = units.size < 255 ? new Uint8Array(65536) : new Uint16Array(65536)
    let width = 1
    for (const u of units) classOf[u] = width++
    // the trie
    const children: Map<number, number>[] = [new Map()]
    const ends: number[][] = [[]]
    literals.forEach((lit, id) => {
      let s = 0
      for (let k = 0; k < lit.length; k++) {
        const c = classOf[lit.charCodeAt(k)]!
        let t = children[s]!.get(c)
        if (t === undefined) {
          t = children.length
          children.push(new Map())
          ends.push([])
          children[s]!.set(c, t)
        }
        s = t
      }
      ends[s]!.push(...(tagsOf[id] ?? []))
    })
    // breadth first: failure links, every transition, and the tags reported in each state (its
    // own literals' and those of its failure chain)
    const n = children.length
    const next = new Int32Array(n * width)
    const fail = new Int32Array(n)
    const out: number[][] = ends.map((e) => [...e])
    const queue: number[] = []
    for (const [c, t] of children[0]!) {
      next[c] = t
      queue.push(t)
    }
    for (let q = 0; q < queue.length; q++) {
      const s = queue[q]!
      if (fail[s] !== 0) out[s] = [...new Set([...out[s]!, ...out[fail[s]!]!])]
      for (let c = 0; c < width; c++) {
        const t = children[s]!.get(c)
        if (t === undefined) next[s * width + c] = next[fail[s]! * width + c]!
        else {
          fail[t] = next[fail[s]! * width + c]!
          next[s * width + c] = t
          queue.push(t)
        }
      }
    }
    const delta = new Int32Array(n * width)
    for (let i = 0; i < delta.length; i++) {
      const t = next[i]!
      delta[i] = t !== 0 && out[t]!.length > 0 ? ~(t * width) : t * width
    }
    const outStart = new Int32Array(n + 1)
    for (let s = 0; s < n; s++) outStart[s + 1] = outStart[s]! + (s === 0 ? 0 : out[s]!.length)
    this.classOf = classOf
    this.delta = delta
    this.width = width
    this.outStart = outStart
    this.tags = Int32Array.from(out.slice(1).flat())
    this.always = ends[0]!
    this.found = new Uint8Array(tagsOf.reduce((m, ts) => ts.reduce((a, t) => Math.max(a, t + 1), m), 0))
  }

  /** found[tag] = 1 for every tag of a literal that occurs in `text`; reused by the next call. */
  scan(text: string): Uint8Array {
    const { classOf, delta, width, outStart, tags, found } = this
    found.fill(0)
    for (const tag of this.always) found[tag] = 1
    let row = 0
    for (let i = 0; i < text.length; i++) {
      const d = delta[row + classOf[text.charCodeAt(i)]!]!
      if (d >= 0) row = d
      else {
        row = ~d
        const s = row / width
        for (let k = outStart[s]!, end = outStart[s + 1]!; k < end; k++) found[tags[k]!] = 1
      }
    }
    return found
  }
}
