/**
 * A strict RFC 9651 (Structured Field Values) List parser, written for the rate-limit header
 * tests (T32). It follows the parsing algorithms of RFC 9651 §4.2 for Lists, Items, Parameters
 * and bare items (Integer, Decimal, String, Token, Byte Sequence, Boolean); Dates and Display
 * Strings are not needed by draft-ietf-httpapi-ratelimit-headers-10 and are refused. Any
 * failure throws: RFC 9651 says a field that fails to parse is ignored as a whole.
 *
 * `rateLimitItems` then narrows the result to what draft-10 allows in `RateLimit` and
 * `RateLimit-Policy`: a non-empty List of Items whose value is an sf-string and whose
 * parameters are all Integers (keys unique). Anything else — an Inner List, a Token name, a
 * Decimal, a Boolean parameter, a duplicated key — is rejected.
 */

export type BareItem = number | string | boolean | { token: string } | { bytes: Buffer } | { decimal: number }
export interface Item {
  readonly value: BareItem
  readonly params: readonly (readonly [string, BareItem])[]
}
export interface InnerList {
  readonly inner: readonly Item[]
  readonly params: readonly (readonly [string, BareItem])[]
}
export type Member = Item | InnerList

export class SfError extends Error {}

const DIGIT = /[0-9]/
const LCALPHA = /[a-z]/
const ALPHA = /[A-Za-z]/
const KEY_CHAR = /[a-z0-9_\-.*]/
// RFC 9110 tchar, plus ":" and "/" (RFC 9651 §3.3.4 sf-token)
const TOKEN_CHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z:/]/
const BASE64_CHAR = /[A-Za-z0-9+/=]/

class Input {
  pos = 0
  constructor(readonly s: string) {}
  get empty(): boolean {
    return this.pos >= this.s.length
  }
  peek(): string {
    return this.s[this.pos] ?? ''
  }
  take(): string {
    const c = this.s[this.pos]
    if (c === undefined) throw new SfError('unexpected end of input')
    this.pos++
    return c
  }
  skipSp(): void {
    while (this.peek() === ' ') this.pos++
  }
  skipOws(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++
  }
}

/** RFC 9651 §4.2 with field type "list". */
export function parseList(field: string): Member[] {
  const input = new Input(field)
  input.skipSp()
  const members: Member[] = []
  while (!input.empty) {
    members.push(parseItemOrInnerList(input))
    input.skipOws()
    if (input.empty) break
    if (input.take() !== ',') throw new SfError(`expected "," at ${input.pos - 1}`)
    input.skipOws()
    if (input.empty) throw new SfError('trailing comma')
  }
  input.skipSp()
  if (!input.empty) throw new SfError(`trailing characters at ${input.pos}`)
  return members
}

function parseItemOrInnerList(input: Input): Member {
  if (input.peek() === '(') return parseInnerList(input)
  return parseItem(input)
}

function parseInnerList(input: Input): InnerList {
  input.take() // (
  const inner: Item[] = []
  while (!input.empty) {
    input.skipSp()
    if (input.peek() === ')') {
      input.take()
      return { inner, params: parseParameters(input) }
    }
    inner.push(parseItem(input))
    const c = input.peek()
    if (c !== ' ' && c !== ')') throw new SfError('bad inner list')
  }
  throw new SfError('unterminated inner list')
}

function parseItem(input: Input): Item {
  const value = parseBareItem(input)
  return { value, params: parseParameters(input) }
}

function parseParameters(input: Input): [string, BareItem][] {
  const params: [string, BareItem][] = []
  while (!input.empty && input.peek() === ';') {
    input.take()
    input.skipSp()
    const key = parseKey(input)
    let value: BareItem = true
    if (input.peek() === '=') {
      input.take()
      value = parseBareItem(input)
    }
    // RFC 9651 keeps the last value of a repeated key; we keep every one (the strict layer refuses duplicates).
    params.push([key, value])
  }
  return params
}

function parseKey(input: Input): string {
  const c = input.peek()
  if (!(LCALPHA.test(c) || c === '*')) throw new SfError(`bad key start ${JSON.stringify(c)}`)
  let key = ''
  while (!input.empty && KEY_CHAR.test(input.peek())) key += input.take()
  return key
}

function parseBareItem(input: Input): BareItem {
  const c = input.peek()
  if (c === '-' || DIGIT.test(c)) return parseNumber(input)
  if (c === '"') return parseString(input)
  if (c === '*' || ALPHA.test(c)) return parseToken(input)
  if (c === ':') return parseBytes(input)
  if (c === '?') return parseBoolean(input)
  throw new SfError(`unsupported bare item at ${input.pos}: ${JSON.stringify(c)}`)
}

function parseNumber(input: Input): number | { decimal: number } {
  let sign = 1
  if (input.peek() === '-') {
    input.take()
    sign = -1
  }
  if (!DIGIT.test(input.peek())) throw new SfError('number without digits')
  let num = ''
  let decimal = false
  while (!input.empty) {
    const c = input.peek()
    if (DIGIT.test(c)) num += input.take()
    else if (!decimal && c === '.') {
      if (num.length > 12) throw new SfError('decimal integer part too long')
      num += input.take()
      decimal = true
    } else break
    if (!decimal && num.length > 15) throw new SfError('integer too long')
    if (decimal && num.length > 16) throw new SfError('decimal too long')
  }
  if (!decimal) return sign * Number.parseInt(num, 10)
  if (num.endsWith('.')) throw new SfError('decimal ends with "."')
  if (num.length - num.indexOf('.') - 1 > 3) throw new SfError('decimal fraction too long')
  return { decimal: sign * Number.parseFloat(num) }
}

function parseString(input: Input): string {
  input.take() // "
  let out = ''
  while (!input.empty) {
    const c = input.take()
    if (c === '\\') {
      if (input.empty) throw new SfError('string ends in an escape')
      const n = input.take()
      if (n !== '"' && n !== '\\') throw new SfError(`bad escape \\${n}`)
      out += n
    } else if (c === '"') return out
    else {
      const code = c.charCodeAt(0)
      if (code < 0x20 || code > 0x7e) throw new SfError('non-printable character in string')
      out += c
    }
  }
  throw new SfError('unterminated string')
}

function parseToken(input: Input): { token: string } {
  let out = input.take()
  while (!input.empty && TOKEN_CHAR.test(input.peek())) out += input.take()
  return { token: out }
}

function parseBytes(input: Input): { bytes: Buffer } {
  input.take() // :
  let b64 = ''
  while (!input.empty && input.peek() !== ':') {
    const c = input.take()
    if (!BASE64_CHAR.test(c)) throw new SfError('bad base64 character')
    b64 += c
  }
  if (input.take() !== ':') throw new SfError('unterminated byte sequence')
  return { bytes: Buffer.from(b64, 'base64') }
}

function parseBoolean(input: Input): boolean {
  input.take() // ?
  const c = input.take()
  if (c === '1') return true
  if (c === '0') return false
  throw new SfError('bad boolean')
}

/** One draft-10 list member: a policy name with integer parameters. */
export interface RateItem {
  readonly name: string
  readonly params: Readonly<Record<string, number>>
}

/**
 * The strict shape of `RateLimit` and `RateLimit-Policy` (draft-10): a non-empty List whose
 * members are Items with an sf-string value and only Integer parameters, each key once.
 */
export function rateLimitItems(field: string): RateItem[] {
  const list = parseList(field)
  if (list.length === 0) throw new SfError('empty list')
  return list.map((m) => {
    if ('inner' in m) throw new SfError('inner list where an item is required')
    if (typeof m.value !== 'string') throw new SfError('the policy name is not an sf-string')
    const params: Record<string, number> = {}
    for (const [k, v] of m.params) {
      if (k in params) throw new SfError(`parameter ${k} repeated`)
      if (typeof v !== 'number' || !Number.isInteger(v)) throw new SfError(`parameter ${k} is not an sf-integer`)
      params[k] = v
    }
    return { name: m.value, params }
  })
}
