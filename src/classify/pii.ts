import { createRequire } from 'node:module'
import { isIPv6 } from 'node:net'
import { findPhoneNumbersInText, type CountryCode } from 'libphonenumber-js/max'
import type { PiiFinding, PiiKind, Span } from './facts.ts'
import { nameWords } from './name-words.ts'

/**
 * PII/PHI detection of our own (GW-7): validated patterns first (checksums, exclusions, context),
 * keyword-gated PHI identifiers, phone numbers through libphonenumber-js, person names through
 * compromise at lower confidence. Results are character spans in memory only (for redaction):
 * the caller keeps kinds and counts; spans never leave the process.
 *
 * Confidence: checksum-validated ≈ 0.99, well-formed with context ≈ 0.85-0.95, keyword-gated
 * ≈ 0.8, names 0.4-0.7.
 */
export interface PiiSpan {
  readonly kind: PiiKind
  readonly start: number
  readonly end: number
  readonly confidence: number
}

/** Person names are looked for in the first this-many characters of a request (compromise is ~5 ms per KB). */
export const NAME_SCAN_CHARS = 20_000

// ---- validators ------------------------------------------------------------------------------

export function luhnValid(digits: string): boolean {
  let sum = 0
  let double = false
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48
    if (d < 0 || d > 9) return false
    if (double) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
    double = !double
  }
  return sum % 10 === 0
}

/** Issuer prefixes and lengths of the major card networks. */
function cardNetworkValid(d: string): boolean {
  const n = d.length
  const p2 = Number(d.slice(0, 2))
  const p3 = Number(d.slice(0, 3))
  const p4 = Number(d.slice(0, 4))
  const p6 = Number(d.slice(0, 6))
  if (d[0] === '4') return n === 13 || n === 16 || n === 19 // Visa
  if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return n === 16 // Mastercard
  if (p2 === 34 || p2 === 37) return n === 15 // Amex
  if (p4 === 6011 || p2 === 65 || (p3 >= 644 && p3 <= 649) || (p6 >= 622126 && p6 <= 622925)) return n >= 16 && n <= 19 // Discover
  if (p4 >= 3528 && p4 <= 3589) return n >= 16 && n <= 19 // JCB
  if (p2 === 36 || p2 === 38 || p2 === 39 || (p3 >= 300 && p3 <= 305) || p3 === 309) return n >= 14 && n <= 19 // Diners
  if (p2 === 62) return n >= 16 && n <= 19 // UnionPay
  if (['50', '56', '57', '58', '63', '67'].includes(d.slice(0, 2))) return n >= 12 && n <= 19 // Maestro
  return false
}

/** IBAN lengths by country (ISO 13616 registry, the common ones). */
const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BR: 29, BY: 28, CH: 21, CR: 22, CY: 28, CZ: 24,
  DE: 22, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18, FO: 18, FR: 27, GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28,
  HR: 21, HU: 28, IE: 22, IL: 23, IQ: 23, IS: 26, IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20, LU: 20,
  LV: 21, MC: 27, MD: 24, ME: 22, MK: 19, MR: 27, MT: 31, MU: 30, NL: 18, NO: 15, PK: 24, PL: 28, PS: 29, PT: 25, QA: 29,
  RO: 24, RS: 22, SA: 24, SC: 31, SE: 24, SI: 19, SK: 24, SM: 27, ST: 25, SV: 28, TL: 23, TN: 24, TR: 26, UA: 29, VA: 22,
  VG: 24, XK: 20,
}

export function ibanValid(raw: string): boolean {
  const s = raw.replace(/\s+/g, '').toUpperCase()
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]+$/.test(s)) return false
  const len = IBAN_LENGTHS[s.slice(0, 2)]
  if (len === undefined || s.length !== len) return false
  const moved = s.slice(4) + s.slice(0, 4)
  let rem = 0
  for (const ch of moved) {
    const v = ch >= 'A' ? String(ch.charCodeAt(0) - 55) : ch
    for (const digit of v) rem = (rem * 10 + (digit.charCodeAt(0) - 48)) % 97
  }
  return rem === 1
}

/** SSA rules: area 000, 666 and 900-999, group 00 and serial 0000 are never issued; two famous specimen numbers. */
export function ssnValid(area: string, group: string, serial: string): boolean {
  const a = Number(area)
  if (a === 0 || a === 666 || a >= 900) return false
  if (group === '00' || serial === '0000') return false
  const whole = `${area}${group}${serial}`
  if (whole === '078051120' || whole === '219099999' || whole === '123456789') return false
  return true
}

// ---- detectors -------------------------------------------------------------------------------

type Found = PiiSpan[]

const ANY_DIGIT = /\d/

function before(text: string, index: number, chars: number): string {
  return text.slice(Math.max(0, index - chars), index).toLowerCase()
}

const EMAIL = /(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b/g

function emails(text: string, out: Found): void {
  for (const m of text.matchAll(EMAIL)) {
    const v = m[0]
    const end = m.index + v.length
    // git@github.com:org/repo.git is an SSH remote, not a person's mailbox.
    if (/^git@/i.test(v) && text[end] === ':') continue
    // Placeholder and reserved top-level domains (RFC 2606, RFC 6761): user@host.tld, a@b.test.
    if (/\.(?:tld|test|example|invalid|localhost)$/i.test(v)) continue
    out.push({ kind: 'EMAIL_ADDRESS', start: m.index, end, confidence: 0.99 })
  }
}

const SSN = /(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])/g
const SSN_BARE = /(?<![\d-])(\d{3})(\d{2})(\d{4})(?![\d-])/g
const SSN_KEYWORD = /\b(?:ssn|ss#|social security|social sec|soc sec|ssa)\b/

function ssns(text: string, out: Found): void {
  for (const m of text.matchAll(SSN)) {
    if (!ssnValid(m[1]!, m[3]!, m[4]!)) continue
    const keyword = SSN_KEYWORD.test(before(text, m.index, 40))
    // The dashed form is distinctive; the spaced form needs the keyword.
    if (m[2] === ' ' && !keyword) continue
    out.push({ kind: 'US_SSN', start: m.index, end: m.index + m[0].length, confidence: keyword ? 0.95 : 0.85 })
  }
  for (const m of text.matchAll(SSN_BARE)) {
    if (!ssnValid(m[1]!, m[2]!, m[3]!) || !SSN_KEYWORD.test(before(text, m.index, 30))) continue
    out.push({ kind: 'US_SSN', start: m.index, end: m.index + m[0].length, confidence: 0.8 })
  }
}

// 12-19 digits, optionally grouped by single spaces or dashes.
const CARD = /(?<![\d-])\d(?:[ -]?\d){11,18}(?![\d-])/g
const NOT_A_CARD = /(?:order|invoice|tracking|ticket|case|ref|reference|serial|sku|confirmation|booking|account|acct|transaction|txn|isbn|id|#|no\.)\s*(?:#|no\.?|number|num|id)?\s*:?\s*$/
const CARD_KEYWORD = /\b(?:card|visa|mastercard|amex|american express|discover|cc|credit|debit|cvv|expir\w*|pay(?:ment)? with)\b/

function cards(text: string, out: Found): void {
  for (const m of text.matchAll(CARD)) {
    const raw = m[0]
    const seps = raw.replace(/\d/g, '')
    if (seps.length > 0 && !/^(?: +|-+)$/.test(seps)) continue // mixed separators: not one number
    const digits = raw.replace(/\D/g, '')
    if (digits.length < 13 || !luhnValid(digits) || !cardNetworkValid(digits)) continue
    const ctx = before(text, m.index, 30)
    if (NOT_A_CARD.test(ctx) && !CARD_KEYWORD.test(ctx)) continue
    out.push({ kind: 'CREDIT_CARD', start: m.index, end: m.index + raw.length, confidence: 0.99 })
  }
}

const IBAN = /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b/gi

function ibans(text: string, out: Found): void {
  for (const m of text.matchAll(IBAN)) {
    let v = m[0]
    // A greedy match can swallow a following word ("... 3000 and"): shrink until the checksum holds.
    while (v.length >= 15) {
      if (ibanValid(v)) {
        out.push({ kind: 'IBAN_CODE', start: m.index, end: m.index + v.length, confidence: 0.99 })
        break
      }
      const cut = v.lastIndexOf(' ')
      if (cut < 0) break
      v = v.slice(0, cut)
    }
  }
}

const OCTET = String.raw`(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)`
const IPV4 = new RegExp(String.raw`(?<![\w.])${OCTET}(?:\.${OCTET}){3}(?![\w.]*\d)(?!\.\w)`, 'g')
const VERSIONISH = /\b(?:v|ver\.?|version|release|build|firmware|chrome|node|python|java|ios|android|os|sdk|api|kernel|update|upgrade|patch|semver|table|figure|fig\.|section|sec\.|chapter|clause|article|step|item|rule|paragraph|appendix|§)\s*:?\s*$/
/** A dotted quad in a sentence about versions ("from version 1.2.3.4 to 1.2.4.0") is a version too. */
const VERSION_TALK = /\b(?:version|versions|release|upgrade|upgraded|downgrade|build|v\d+)\b/
const IPV6 = /(?<![\w:])(?:[0-9a-f]{1,4}:){1,7}(?::|(?::[0-9a-f]{1,4}){1,7}|[0-9a-f]{1,4})(?![\w:])/gi

function ips(text: string, out: Found, digits = true, colons = true): void {
  if (digits) for (const m of text.matchAll(IPV4)) {
    const v = m[0]
    if (/^(?:127\.|0\.0\.0\.0$|255\.255\.255\.\d+$|255\.255\.\d+\.0$)/.test(v)) continue // loopback, unspecified, netmasks
    if (VERSIONISH.test(before(text, m.index, 16)) || VERSION_TALK.test(before(text, m.index, 40))) continue
    out.push({ kind: 'IP_ADDRESS', start: m.index, end: m.index + v.length, confidence: 0.95 })
  }
  if (colons) for (const m of text.matchAll(IPV6)) {
    const v = m[0]
    if (!isIPv6(v) || v === '::' || v === '::1' || !v.includes(':')) continue
    // Times (12:30:45) and MAC addresses are not IPv6; isIPv6 already rejects most. Need 3+ groups.
    if ((v.match(/:/g) ?? []).length < 3) continue
    out.push({ kind: 'IP_ADDRESS', start: m.index, end: m.index + v.length, confidence: 0.95 })
  }
}

const PHONE_KEYWORD = /\b(?:phone|call|calls|called|calling|tel|telephone|mobile|cell|cellphone|fax|text me|sms|whatsapp|reach me|contact|dial|number|ring|landline|hotline)\b/
const NOT_A_PHONE = /(?:order|invoice|tracking|ticket|case|ref|reference|serial|sku|confirmation|booking|account|acct|transaction|txn|isbn|part|model|id|po|claim|policy|member|mrn|patient|record|batch|lot|build|version)\s*(?:#|no\.?|number|num|id)?\s*(?:is|:)?\s*#?\s*$/
const GB_HINT = /\b(?:uk|u\.k\.|united kingdom|britain|british|england|scotland|wales|london|manchester|\+44)\b/i

/**
 * libphonenumber accepts any digit grouping; people write phone numbers in a few. A national
 * number grouped like a date or a part number ("2024-11-0042") is not taken for a phone.
 */
function plausibleGrouping(raw: string, country: CountryCode): boolean {
  if (raw.trim().startsWith('+')) return true
  if (/^(?:19|20)\d\d[-/.]\d{1,2}[-/.]\d{1,4}$/.test(raw.trim())) return false
  const groups = raw.split(/\D+/).filter((g) => g !== '').map((g) => g.length).join(',')
  if (country === 'US') return ['3,3,4', '1,3,3,4', '10', '11', '3,7', '1,10'].includes(groups)
  return raw.replace(/\D/g, '').startsWith('0') && raw.replace(/\D/g, '').length >= 10
}

/**
 * Phone-shaped candidates (international with +, US national, UK national). libphonenumber's
 * own text scanner is superlinear on digit-heavy text (a 30 KB table of numbers took 1.5 s) and
 * costs ~1 ms per call, so it only validates these short candidates.
 */
const PHONE_RUN = new RegExp([
  String.raw`\+\d{1,3}[\s.-]?(?:\(?\d{1,4}\)?[\s.-]?){1,5}\d{2,4}`,
  String.raw`(?:\b1[\s.-]?)?(?:\(\d{3}\)\s?|\b\d{3}[\s.-]?)\d{3}[\s.-]?\d{4}`,
  String.raw`\b0\d{2,4}[\s-]?\d{3,4}[\s-]?\d{3,4}`,
].map((p) => `(?<![\\d+])(?:${p})(?![\\d])`).join('|'), 'g')

function phones(text: string, out: Found): void {
  const countries: CountryCode[] = ['US']
  if (GB_HINT.test(text)) countries.push('GB')
  const seen = new Set<number>()
  for (const run of text.matchAll(PHONE_RUN)) {
    for (const country of countries) {
      let found: ReturnType<typeof findPhoneNumbersInText>
      try {
        found = findPhoneNumbersInText(run[0], { defaultCountry: country })
      } catch {
        continue
      }
      for (const f of found) {
        const startsAt = run.index + f.startsAt
        const endsAt = run.index + f.endsAt
        if (seen.has(startsAt)) continue
        const raw = text.slice(startsAt, endsAt)
        const ctx = before(text, startsAt, 30)
        if (NOT_A_PHONE.test(ctx) || text[startsAt - 1] === '#') continue
        if (!plausibleGrouping(raw, country)) continue
        const formatted = /[\s().+-]/.test(raw)
        const keyword = PHONE_KEYWORD.test(before(text, startsAt, 40))
        if (!formatted && !keyword) continue
        seen.add(startsAt)
        out.push({ kind: 'PHONE_NUMBER', start: startsAt, end: endsAt, confidence: keyword ? 0.9 : 0.8 })
      }
    }
  }
}

/** Keyword-gated identifiers: the keyword, up to ~25 characters of filler, then the value. */
interface Gated {
  readonly kind: PiiKind
  readonly keyword: RegExp
  readonly value: RegExp
  readonly confidence: number
}

const MONTH = String.raw`(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?`
const DATE = String.raw`(?:\d{1,2}[/.-]\d{1,2}[/.-](?:19|20)?\d{2}|(?:19|20)\d{2}-\d{1,2}-\d{1,2}|${MONTH}\s+\d{1,2}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{2}|\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?${MONTH},?\s+(?:19|20)\d{2})`
const FILLER = String.raw`\s*(?:(?:is|was|are|:|#|no\.?|number|num|id|on|of|the|patient'?s?|my|his|her|their|card|listed|as|reads|=|-)\s*){0,4}`

const GATED: readonly Gated[] = [
  {
    kind: 'MEDICAL_RECORD_NUMBER',
    keyword: /\b(?:mrn|medical record(?:s)?(?: number| no\.?| #| id)?|patient (?:id|number|no\.?)|chart (?:number|no\.?|#|id)|hospital (?:number|id|no\.?))/gi,
    value: /^[A-Z]{0,4}[-\s]?\d[\d-]{3,13}[A-Z]?\b/i,
    confidence: 0.8,
  },
  {
    kind: 'HEALTH_PLAN_ID',
    keyword: /\b(?:member (?:id|number|no\.?|#)|subscriber (?:id|number|no\.?)|insurance (?:id|number|no\.?|member id)|health ?plan (?:id|number|no\.?)|policy (?:number|no\.?|#|id)|medicare (?:number|id|no\.?|beneficiary identifier|mbi)|mbi|medicaid (?:number|id|no\.?)|beneficiary (?:id|number))/gi,
    value: /^(?=[A-Z0-9-]*\d[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{5,16}\b/i,
    confidence: 0.8,
  },
  {
    kind: 'DATE_OF_BIRTH',
    keyword: /\b(?:dob|d\.o\.b\.?|date of birth|birth ?date|birthday|born(?: on)?)/gi,
    value: new RegExp(`^${DATE}`, 'i'),
    confidence: 0.85,
  },
  {
    kind: 'US_PASSPORT',
    keyword: /\bpassport(?: (?:number|no\.?|#|id))?/gi,
    value: /^[A-Z]?\d{8,9}\b/i,
    confidence: 0.8,
  },
  {
    kind: 'US_DRIVER_LICENSE',
    keyword: /\b(?:driver'?s?'? licen[cs]e(?: (?:number|no\.?|#|id))?|driving licen[cs]e(?: (?:number|no\.?|#))?|dl (?:number|no\.?|#)|license (?:number|no\.?|#))/gi,
    value: /^(?=[A-Z0-9-]*\d{4})[A-Z]{0,2}[-\s]?[0-9][0-9-]{4,14}\b/i,
    confidence: 0.75,
  },
]

const FILLER_RE = new RegExp(`^${FILLER}`, 'i')

function gated(text: string, out: Found): void {
  for (const g of GATED) {
    for (const m of text.matchAll(g.keyword)) {
      let at = m.index + m[0].length
      const fill = FILLER_RE.exec(text.slice(at, at + 40))
      if (fill) at += fill[0].length
      const v = g.value.exec(text.slice(at, at + 40))
      if (!v) continue
      const value = v[0].replace(/[\s-]+$/, '')
      out.push({ kind: g.kind, start: at, end: at + value.length, confidence: g.confidence })
    }
  }
}

// ---- names -----------------------------------------------------------------------------------

const TITLE = /\b(?:mr|mrs|ms|miss|mx|dr|prof|professor|sir|dame|nurse|patient|pt|client|dear|hi|hello|hey|thanks|regards|sincerely|cc|attn|from|to|with|name(?: is|:)|called|named|i'?m|i am|my (?:son|daughter|wife|husband|partner|friend|colleague|manager|boss|mother|mom|father|dad|sister|brother|neighbou?r|tenant|landlord|client|patient|doctor|coworker))\.?\s*$/i
/** Eponyms: "Monte Carlo method", "Parkinson's disease", "Newton's laws" name a thing, not a person here. */
const EPONYM_AFTER = /^(?:'s|s'|’s)?\s*(?:method|methods|theorem|law|laws|rule|principle|equation|equations|constant|series|algorithm|distribution|effect|test|number|numbers|transform|process|disease|syndrome|lymphoma|sign|reflex|conjecture|hypothesis|paradox|problem|inequality|formula|identity|lemma|triangle|sequence|model|curve|cycle|scale|index|ratio|criterion|integral|space|machine|prize|medal|award|institute|university|college|hospital|foundation|street|avenue|road|boulevard|park|bridge|airport|station|square|center|centre|library|school|county|inc|corp|llc|ltd|company|album|song|tour|movie|film|novel|book|play|show|squad|killer)\b/i
const NOT_NAMES = new Set(['monte carlo', 'jordan', 'austin', 'paris', 'victoria', 'georgia', 'chelsea', 'florence', 'siri', 'alexa', 'cortana', 'claude', 'gemini', 'python', 'ruby', 'rust', 'julia', 'ada', 'swift', 'java', 'kotlin', 'elixir', 'go', 'docker', 'redis', 'kafka', 'jenkins', 'ansible', 'terraform', 'apple', 'tesla', 'amazon', 'google', 'christmas', 'easter', 'god', 'jesus', 'mother', 'father', 'mom', 'dad', 'zodiac', 'hamlet', 'romeo', 'juliet', 'santa', 'elden', 'mahjong', 'bayes', 'dijkstra', 'euler', 'gauss', 'newton', 'fibonacci', 'pythagoras', 'taylor', 'fourier', 'laplace', 'doppler', 'alzheimer', 'parkinson', 'hodgkin', 'crohn', 'huntington', 'tourette', 'asperger', 'down', 'lou gehrig', 'murphy', 'occam', 'schrodinger', 'heisenberg', 'einstein', 'darwin', 'mendel', 'shakespeare', 'hitler', 'mozart', 'beethoven'])

/** Raw person mentions from compromise: [start, length] pairs, before any filtering. */
export type RawPeople = readonly (readonly [number, number])[]

type Nlp = (text: string) => { people(): { json(opts: { offset: true }): unknown } }
let nlp: Nlp | undefined

/**
 * Runs compromise's people() over `text` in this thread. The classifier runs it in its worker
 * instead, so compromise (~40 MB) is loaded here only on first use (the CLI, friction's redaction).
 */
export function findPeople(text: string): RawPeople {
  try {
    nlp ??= createRequire(import.meta.url)('compromise') as Nlp
    const people = nlp(text).people().json({ offset: true }) as { offset: { start: number; length: number } }[]
    return people.map((p) => [p.offset.start, p.offset.length] as const)
  } catch {
    return []
  }
}

/** Turns raw compromise mentions into PERSON spans: trimmed, de-titled, eponyms and known non-names dropped. */
export function personSpans(text: string, raw: RawPeople): PiiSpan[] {
  const out: PiiSpan[] = []
  for (const [rawStart, rawLength] of raw) {
    let start = rawStart
    let end = start + rawLength
    if (start < 0 || end > text.length) continue
    // Trim punctuation and possessives compromise keeps ("Garcia," "Chen's").
    while (end > start && /[\s,.;:!?)"'’]/.test(text[end - 1]!)) end--
    if (/['’]s$/i.test(text.slice(start, end))) end -= 2
    while (start < end && /[\s("'‘]/.test(text[start]!)) start++
    // Drop a leading title: "Dr. Emily Chen" → "Emily Chen" (the title is not the identifier).
    const titled = /^(?:mr|mrs|ms|miss|mx|dr|prof|sir|dame)\.?\s+/i.exec(text.slice(start, end))
    if (titled) start += titled[0].length
    if (end - start < 2) continue
    const value = text.slice(start, end)
    const lower = value.toLowerCase()
    if (NOT_NAMES.has(lower) || lower.split(/\s+/).every((w) => NOT_NAMES.has(w))) continue
    if (EPONYM_AFTER.test(text.slice(end, end + 20))) continue
    const tokens = value.split(/\s+/)
    if (tokens.some((t) => /^[A-Z0-9&]{2,}$/.test(t))) continue // acronyms (NAS, IBM, HR) are not names
    const capitalised = tokens.every((t) => /^[A-Z]/.test(t))
    const cue = TITLE.test(text.slice(Math.max(0, rawStart - 24), rawStart)) || !!titled
    let confidence: number
    if (cue && tokens.length >= 2) confidence = 0.7
    else if (cue) confidence = 0.6
    else if (capitalised && tokens.length >= 2) confidence = 0.6
    else if (capitalised) confidence = 0.45
    else continue // a lone lowercase word with no cue is too often not a name
    // A single capitalised word at the start of a sentence with no cue is weak evidence.
    if (!cue && tokens.length === 1 && (start === 0 || /[.!?]\s*$/.test(text.slice(Math.max(0, start - 3), start)))) continue
    out.push({ kind: 'PERSON', start, end, confidence })
  }
  return out
}

// ---- assembly --------------------------------------------------------------------------------

/** Keeps, among overlapping spans, the most confident one (ties: the longer). Sorted by start. */
function resolveOverlaps(spans: PiiSpan[]): PiiSpan[] {
  const byStrength = [...spans].sort((a, b) => b.confidence - a.confidence || (b.end - b.start) - (a.end - a.start) || a.start - b.start)
  const kept: PiiSpan[] = []
  for (const s of byStrength) if (!kept.some((k) => s.start < k.end && k.start < s.end)) kept.push(s)
  return kept.sort((a, b) => a.start - b.start)
}

export interface DetectOptions {
  /**
   * Person names: true runs compromise here (default), false skips them, and raw mentions found
   * elsewhere (the classifier's worker) are filtered and used as they are.
   */
  readonly names?: boolean | RawPeople
}

/** Every PII/PHI span found in one text. Synchronous; ~1-5 ms for a prompt of a few hundred words. */
export function detectPii(text: string, opts: DetectOptions = {}): PiiSpan[] {
  const out: Found = []
  // Gates that only skip detectors which cannot find anything: every email match holds an '@';
  // every SSN, card, IBAN, IPv4, keyword-gated value (MRN, plan id, date of birth, passport,
  // licence) and phone candidate holds a digit; every IPv6 match holds a ':'.
  const digits = ANY_DIGIT.test(text)
  if (text.includes('@')) emails(text, out)
  if (digits) {
    ssns(text, out)
    cards(text, out)
    ibans(text, out)
  }
  ips(text, out, digits, text.includes(':'))
  if (digits) {
    gated(text, out)
    phones(text, out)
  }
  const names = opts.names ?? true
  if (names !== false) {
    const view = text.length > NAME_SCAN_CHARS ? text.slice(0, NAME_SCAN_CHARS) : text
    out.push(...personSpans(text, names === true ? findPeople(view) : names))
  }
  return resolveOverlaps(out)
}

const WINDOW_CHARS = 4096
const WINDOW_OVERLAP = 256

export interface SegmentsOptions {
  readonly signal?: AbortSignal
  /**
   * Raw person mentions per segment, found elsewhere (a worker) over each segment's first
   * characters within the NAME_SCAN_CHARS budget (see `nameScanViews`). Without it, compromise
   * runs here over the same views.
   */
  readonly people?: readonly RawPeople[]
}

/**
 * The part of each segment names are looked for in: NAME_SCAN_CHARS in total, in order, with the
 * sentences that cannot hold a name `personSpans` would keep blanked out (offsets unchanged), or
 * '' when none can — compromise costs ~5–20 ms per KB here, and most prompts hold no name at all.
 */
export function nameScanViews(segments: readonly string[]): string[] {
  let budget = NAME_SCAN_CHARS
  return segments.map((s) => {
    const view = s.slice(0, Math.max(0, budget))
    budget -= view.length
    return nameCandidates(view)
  })
}

/** Capitalised in English prose, never a person's name here (languages and demonyms). */
const NEVER_NAMES = new Set(['english', 'french', 'spanish', 'german', 'italian', 'portuguese', 'dutch', 'greek', 'latin', 'russian', 'polish', 'swedish', 'norwegian', 'danish', 'finnish', 'turkish', 'arabic', 'hebrew', 'hindi', 'chinese', 'mandarin', 'cantonese', 'japanese', 'korean', 'vietnamese', 'thai', 'indonesian', 'american', 'british', 'european', 'african', 'asian', 'canadian', 'australian', 'indian', 'mexican', 'irish', 'scottish', 'welsh', 'swiss', 'austrian', 'belgian'])
/** A capitalised word that could begin a name: not one compromise knows only as something else. */
const mayBeName = (lower: string, words: ReturnType<typeof nameWords>) => words.names.has(lower) || !(words.other.has(lower) || NEVER_NAMES.has(lower) || NOT_NAMES.has(lower))
const SENTENCE = /(?:[^\n.!?]|[.!?]+(?![\s.!?]|$))*(?:[.!?]+|\n+|$)/g
const WORD = /\p{L}[\p{L}'’-]*/gu
/** Scan copies of SENTENCE and WORD for the exec loops of nameCandidates (run synchronously to the end, so never shared at once). */
const SENTENCE_SCAN = new RegExp(SENTENCE.source, SENTENCE.flags)
const WORD_SCAN = new RegExp(WORD.source, WORD.flags)
const CAPITALISED = /^\p{Lu}(?=.*\p{Ll})/u

/**
 * `text` with every sentence blanked (spaces, same length) in which `personSpans` could keep no
 * name: it keeps a capitalised word only when it is not the first of its sentence or follows a cue
 * (TITLE), and a lower-case word only after a cue — compromise finds those through its lexicon.
 * A capitalised word compromise's lexicon knows only as something else ("Monday", "Paris", "You")
 * or a language ("English") does not make a sentence a candidate; an unknown one does.
 * A sentence is kept when it has such a word; '' when no sentence is kept.
 */
export function nameCandidates(text: string): string {
  let out = ''
  let kept = false
  const lexicon = nameWords()
  // exec loops over module-level copies (reset here) instead of matchAll and a closure per word:
  // the same matches in the same order, without an iterator and a cloned regex per sentence.
  const sentences = SENTENCE_SCAN
  sentences.lastIndex = 0
  let m: RegExpExecArray | null
  while ((m = sentences.exec(text)) !== null) {
    const sentence = m[0]
    const index = m.index
    if (sentence === '') {
      // What matchAll does after an empty match (no `u` flag: one code unit).
      sentences.lastIndex++
      continue
    }
    let candidate = false
    let first = true
    const words = WORD_SCAN
    words.lastIndex = 0
    let w: RegExpExecArray | null
    while ((w = words.exec(sentence)) !== null) {
      const word = w[0]
      const lower = word.toLowerCase()
      if (CAPITALISED.test(word) ? mayBeName(lower, lexicon) && (!first || cuedAt(text, index + w.index)) : lexicon.names.has(lower) && cuedAt(text, index + w.index)) {
        candidate = true
        break
      }
      first = false
    }
    kept ||= candidate
    if (candidate) out += sentence
    else {
      // A sentence holds line breaks only at its end (they end it): blank what comes before them.
      let body = sentence.length
      while (body > 0 && sentence.charCodeAt(body - 1) === 10) body-- // the trailing line breaks (what /\n*$/ matched)
      out += ' '.repeat(body) + sentence.slice(body)
    }
  }
  return kept ? out : ''
}

/** A name cue (TITLE) in the 24 characters before `at`. */
function cuedAt(text: string, at: number): boolean {
  return TITLE.test(text.slice(Math.max(0, at - 24), at))
}

/**
 * Detects PII in every segment. Long segments are scanned in overlapping windows with a yield to
 * the event loop between windows, so a multi-megabyte attachment never blocks other requests.
 */
export async function detectPiiInSegments(segments: readonly string[], opts: SegmentsOptions = {}): Promise<PiiFinding[]> {
  const { signal } = opts
  const people = opts.people ?? nameScanViews(segments).map((v) => (v === '' ? [] : findPeople(v)))
  const byKind = new Map<PiiKind, { spans: Span[]; confidence: number }>()
  for (let segment = 0; segment < segments.length; segment++) {
    const text = segments[segment]!
    const raw = people[segment] ?? []
    for (let from = 0; from < text.length; from += WINDOW_CHARS) {
      if (from > 0) {
        await new Promise((r) => setImmediate(r))
        signal?.throwIfAborted()
      }
      // Read a little before and after the window so keywords and values across the edge are seen;
      // keep only spans that start inside the window (the next window owns the rest).
      const lo = Math.max(0, from - WINDOW_OVERLAP)
      const hi = Math.min(text.length, from + WINDOW_CHARS + WINDOW_OVERLAP)
      const view = text.slice(lo, hi)
      const names = raw.filter(([s, l]) => s >= lo && s + l <= hi).map(([s, l]) => [s - lo, l] as const)
      for (const s of detectPii(view, { names })) {
        const start = s.start + lo
        if (start < from || start >= from + WINDOW_CHARS) continue
        const entry = byKind.get(s.kind) ?? { spans: [], confidence: 0 }
        entry.spans.push({ segment, start, end: s.end + lo })
        entry.confidence = Math.max(entry.confidence, s.confidence)
        byKind.set(s.kind, entry)
      }
    }
  }
  return [...byKind.entries()].map(([kind, e]) => ({ kind, count: e.spans.length, confidence: e.confidence, spans: e.spans }))
}
