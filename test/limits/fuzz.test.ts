import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import fc from 'fast-check'
import { orgWithKeys, startApp, type TestApp } from '../helpers/app.ts'
import { SESSION_COOKIE } from '../../src/api/guard.ts'
import { VALID, type Ctx, type Valid } from '../api/fixtures.ts'
import { apiRoutes, call, person, stateDiff, tableState, type Person } from '../api/world.ts'

/**
 * T90 (LIMIT-3): schema-driven fuzzing with fast-check. For every AI endpoint and every admin
 * POST/PATCH/PUT route, ≥ 500 generated requests (10,000 with TOLLGATE_TEST_LEVEL=full) mix
 * valid ones with type flips, missing and extra properties, boundary numbers, 1 MB strings, lone
 * surrogates, NUL, RTL text, JSON nested 10,000 deep, 100,000-element arrays,
 * `__proto__`/`constructor`/`prototype` keys, duplicate keys, parameter pollution, wrong content
 * types, missing credentials and oversized bodies. Pass: 0 5xx; every invalid request answered
 * with a 4xx in {400, 401, 403, 404, 409, 413, 415, 422, 429} in the endpoint's own error shape;
 * ≥ 99% of valid AI requests accepted; no stack trace, node_modules, source path or SQL text in
 * any answer; the server keeps serving (health checked between batches); refused admin requests
 * change no row; Object.prototype untouched; RSS growth bounded.
 *
 * The seed is fixed (printed on failure); replay or vary it with TOLLGATE_FUZZ_SEED, and set
 * the count with TOLLGATE_FUZZ_RUNS.
 */

const FULL = process.env['TOLLGATE_TEST_LEVEL'] === 'full'
const RUNS = Number(process.env['TOLLGATE_FUZZ_RUNS'] ?? (FULL ? 10_000 : 500))
const SEED = Number(process.env['TOLLGATE_FUZZ_SEED'] ?? 90_2026)
const ALLOWED_4XX = new Set([400, 401, 403, 404, 409, 413, 415, 422, 429])
const BODY_LIMIT = 2 * 1024 * 1024
const CONCURRENCY = 8
const BATCH = 48
/**
 * Memory after the run (two forced GCs) against before it. The V8 heap must come back (a leak of
 * request data would stay there); RSS is allowed more because the allocator keeps pages that
 * megabyte-sized bodies used (measured: heap +7 MB, RSS +90-100 MB over a default run).
 */
const HEAP_GROWTH_BOUND = 40 * 1024 * 1024
const RSS_GROWTH_BOUND = 192 * 1024 * 1024

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

type Expect = 'valid' | 'invalid' | 'either'

interface Case {
  readonly what: string
  readonly expect: Expect
  /** Raw body text, built when it is sent (a generated run holds thousands of cases). */
  readonly body: () => string
  readonly contentType?: string
  /** Credentials: as usual, none, or wrong. */
  readonly auth?: 'none' | 'bad'
  /** Admin only: drop the CSRF token. */
  readonly noCsrf?: boolean
  readonly query?: string
}

// ---- building bodies: raw JSON fragments (duplicate keys, deep nesting, huge numbers) ----

class Raw {
  constructor(readonly text: string) {}
}
const raw = (text: string) => new Raw(text)

/** JSON.stringify, except that Raw values are spliced in as they are. */
function toJson(v: unknown): string {
  const raws: string[] = []
  const s = JSON.stringify(v, (_k, x: unknown) => {
    if (x instanceof Raw) {
      raws.push(x.text)
      return `@@RAW${raws.length - 1}@@`
    }
    return x
  })
  return s.replace(/"@@RAW(\d+)@@"/g, (_, i: string) => raws[Number(i)]!)
}

const deepArray = (n: number) => raw('['.repeat(n) + ']'.repeat(n))
const deepObject = (n: number) => raw('{"a":'.repeat(n) + '1' + '}'.repeat(n))

const SPECIAL = [
  '\u0000', '\uD800', '\uDFFF', 'a\uDBFFb', '\u202Eevil\u202C', 'שלום עולם', 'مرحبا بالعالم', '\u200B\u200D', '\uFEFF', '🙂👩‍👩‍👧', 'e\u0301',
  '\\', '"', '</script><script>alert(1)</script>', "'; DROP TABLE decision; --", '${7*7}{{7*7}}', '%s%n%x', '\r\n\r\nX-Injected: 1', '../../etc/passwd', 'null', '__proto__',
]

const text: fc.Arbitrary<string> = fc.array(fc.oneof(
  { weight: 5, arbitrary: fc.string({ unit: 'grapheme', maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }) },
  { weight: 3, arbitrary: fc.constantFrom(...SPECIAL) },
), { minLength: 1, maxLength: 6 }).map((parts) => parts.join('')).filter((s) => s.length > 0)

/** `n` characters of mixed-direction text. */
const long = (n: number) => 'Lorem ipsum \u202Eعربى\u202C '.repeat(Math.ceil(n / 20)).slice(0, n)
/** Text, sometimes a few KB (the 100 KB and 1 MB prompts are fixed cases: the classifier takes seconds on them). */
const longText: fc.Arbitrary<string> = fc.oneof({ weight: 20, arbitrary: text }, { weight: 1, arbitrary: fc.integer({ min: 1000, max: 8000 }).map(long) })

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64')

// ---- the AI endpoints ----

type Format = 'anthropic' | 'openai' | 'native'
const PATHS: Record<Format, string> = { anthropic: '/v1/messages', openai: '/v1/chat/completions', native: '/v1/intercept' }
type Obj = Record<string, unknown>

const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined })
const clean = (o: Obj): Obj => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))
const temperature = fc.double({ min: 0, max: 2, noNaN: true })
const topP = fc.double({ min: 0, max: 1, noNaN: true })

const VALID_BODY: Record<Format, fc.Arbitrary<Obj>> = {
  anthropic: fc.record({
    model: fc.constantFrom('claude-sonnet-4-5', 'claude-haiku-4-5', 'local-echo'),
    max_tokens: fc.oneof(fc.integer({ min: 1, max: 1_000_000 }), fc.constantFrom(1, 1_000_000)),
    messages: fc.array(fc.record({ role: fc.constantFrom('user', 'assistant'), content: fc.oneof(longText, fc.array(fc.record({ type: fc.constant('text'), text }), { minLength: 1, maxLength: 3 })) }), { minLength: 1, maxLength: 3 }),
    system: opt(fc.oneof(text, fc.array(fc.record({ type: fc.constant('text'), text }), { maxLength: 2 }))),
    temperature: opt(temperature), top_p: opt(topP), stream: opt(fc.boolean()),
    stop_sequences: opt(fc.array(fc.string({ maxLength: 20 }), { maxLength: 4 })),
    metadata: opt(fc.record({ user_id: fc.string({ maxLength: 20 }) })),
  }).map(clean),
  openai: fc.record({
    model: fc.constantFrom('gpt-4o', 'gpt-4o-mini', 'local-echo'),
    system: opt(text),
    messages: fc.array(fc.record({ role: fc.constantFrom('user', 'assistant'), content: fc.oneof(longText, fc.array(fc.record({ type: fc.constant('text'), text }), { minLength: 1, maxLength: 3 })) }), { minLength: 1, maxLength: 3 }),
    temperature: opt(temperature), top_p: opt(topP), stream: opt(fc.boolean()),
    max_tokens: opt(fc.integer({ min: 1, max: 1_000_000 })),
    stop: opt(fc.oneof(fc.string({ maxLength: 10 }), fc.array(fc.string({ maxLength: 10 }), { maxLength: 4 }))),
    user: opt(fc.string({ maxLength: 20 })),
  }).map(({ system, ...b }) => clean({ ...b, messages: [...(system === undefined ? [] : [{ role: 'system', content: system }]), ...(b.messages as Obj[])] })),
  native: fc.record({
    model: fc.constantFrom('local-echo', 'claude-sonnet-4-5', 'gpt-4o'),
    prompt: longText, system: opt(text),
    max_tokens: opt(fc.integer({ min: 1, max: 1_000_000 })), temperature: opt(temperature), top_p: opt(topP), stream: opt(fc.boolean()),
    stop: opt(fc.array(fc.string({ maxLength: 20 }), { maxLength: 4 })),
    attachments: opt(fc.array(fc.record({ mime_type: fc.constantFrom('text/plain', 'text/markdown', 'text/csv'), data: text.map(b64), filename: opt(fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('../../etc/passwd', '/etc/shadow', 'C:\\x'))) }).map(clean), { maxLength: 3 })),
  }).map(clean),
}

/** Values that are certainly invalid for each field (per the wire's documented rules). */
const WRONG: Record<Format, Record<string, unknown[]>> = {
  anthropic: {
    model: [123, true, [], {}, null, '', 'has space', 'x'.repeat(300), 'x'.repeat(1_000_000), '\u0000', '\uD800', 'מודל', 'a\nb'],
    max_tokens: [0, -1, 1_000_001, 1.5, '16', true, [], {}, null, 2 ** 53, raw('1e400'), raw('-0')],
    messages: ['hi', {}, 42, null, [], [42], [{ role: 'system', content: 'x' }], [{ role: 'user' }], [{ role: 'user', content: 42 }], [{ role: 'user', content: [{ type: 'text', text: 5 }] }], [{ role: 'user', content: [{ type: 'IMAGE!' }] }], [{ role: '\uD800', content: 'x' }], raw(`[${'1,'.repeat(99_999)}1]`)],
    temperature: [-0.001, 2.001, '1', true, [], {}, raw('1e400')],
    top_p: [-0.1, 1.1, 'x', false],
    stream: ['yes', 1, 0, [], {}],
    system: [123, true, {}, [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgoAAAAA' } }]],
    stop_sequences: [[1], ['x'.repeat(1001)], Array.from({ length: 17 }, () => 's'), 42],
  },
  openai: {
    model: [123, true, [], {}, null, '', 'has space', 'x'.repeat(300), 'y'.repeat(1_000_000), '\u0000', '\uDFFF', 'نموذج'],
    messages: ['hi', {}, 42, null, [], [42], [{ role: 'robot', content: 'x' }], [{ role: 'user', content: 42 }], [{ role: 'user', content: [{ type: 'text', text: 5 }] }], [{ role: 'user', content: [{ type: '' }] }], raw(`[${'1,'.repeat(99_999)}1]`)],
    max_tokens: [0, -1, 1_000_001, 1.5, '16', true, raw('1e400')],
    temperature: [-0.001, 2.001, '1', true, []],
    top_p: [-0.1, 1.1, 'x'],
    stream: ['yes', 1, []],
    stop: [['a', 'b', 'c', 'd', 'e'], [1], 42, {}],
    stream_options: ['x', 1, [], { include_usage: 'yes' }],
  },
  native: {
    model: [123, true, [], {}, null, '', 'has space', 'x'.repeat(300), '\u0000', '\uD800'],
    prompt: ['', 42, [], {}, null, true, [long(1_000_000)]],
    system: [42, {}, [], true],
    max_tokens: [0, -1, 1_000_001, 1.5, '16', raw('1e400')],
    temperature: [-0.001, 2.001, '1'],
    top_p: [-0.1, 1.1],
    stream: ['yes', 1],
    stop: [[1], Array.from({ length: 17 }, () => 's'), 42],
    attachments: ['x', {}, 42, [1], [{ mime_type: 'application/zip', data: 'UEsDBA==' }], [{ mime_type: 'text/plain', data: '!!!!' }], [{ mime_type: 'text/plain', data: 'aGk=', extra: 1 }], [{ mime_type: 'image/png', data: b64('GIF89a not a png') }], [{ mime_type: 'text/plain', data: Buffer.from([0xff, 0xfe]).toString('base64') }], Array.from({ length: 17 }, () => ({ mime_type: 'text/plain', data: 'aGk=' }))],
  },
}
const REQUIRED: Record<Format, string[]> = { anthropic: ['model', 'max_tokens', 'messages'], openai: ['model', 'messages'], native: ['model', 'prompt'] }

/** Shared invalid shapes: not JSON, not an object, wrong media type, no or bad credentials, too large. */
function envelopeCases(valid: Obj): fc.Arbitrary<Case>[] {
  const json = () => toJson(valid)
  // `{` + a member + the rest: a member added in front of the valid body's own.
  const prefixed = (member: string) => () => `{${member}${json() === '{}' ? '}' : `,${json().slice(1)}`}`
  return [
    fc.constantFrom<Case>(
      { what: 'body is an array', expect: 'invalid', body: () => `[${json()}]` },
      { what: 'body is a string', expect: 'invalid', body: () => JSON.stringify(json()) },
      { what: 'body is a number', expect: 'invalid', body: () => '42' },
      { what: 'body is null', expect: 'invalid', body: () => 'null' },
      { what: 'body is true', expect: 'invalid', body: () => 'true' },
      { what: 'empty body', expect: 'invalid', body: () => '' },
      { what: 'truncated JSON', expect: 'invalid', body: () => json().slice(0, Math.max(1, json().length - 2)) },
      { what: 'trailing comma', expect: 'invalid', body: () => json().replace(/}$/, ',}') },
      { what: 'single quotes', expect: 'invalid', body: () => (json() === '{}' ? "{'a':1}" : json().replace(/"/g, "'")) },
      { what: 'NaN literal', expect: 'invalid', body: prefixed('"temperature":NaN') },
      { what: 'a comment', expect: 'invalid', body: () => `/* hi */${json()}` },
      { what: 'content-type text/plain', expect: 'invalid', body: json, contentType: 'text/plain' },
      { what: 'content-type form', expect: 'invalid', body: json, contentType: 'application/x-www-form-urlencoded' },
      { what: 'content-type xml', expect: 'invalid', body: json, contentType: 'application/xml' },
      { what: 'content-type multipart', expect: 'invalid', body: json, contentType: 'multipart/form-data; boundary=x' },
      { what: 'no credentials', expect: 'invalid', body: json, auth: 'none' },
      { what: 'wrong credentials', expect: 'invalid', body: json, auth: 'bad' },
      { what: 'over the body limit', expect: 'invalid', body: prefixed(`"pad":"${'p'.repeat(BODY_LIMIT)}"`) },
      { what: 'a BOM before the JSON', expect: 'either', body: () => `\uFEFF${json()}` },
      { what: 'content-type with charset', expect: 'either', body: json, contentType: 'application/json; charset=utf-8' },
      { what: 'content-type upper case', expect: 'either', body: json, contentType: 'APPLICATION/JSON' },
    ),
    // Nesting 10,000 deep is refused before parsing, and so is one level over the limit.
    fc.constantFrom<Case>(
      { what: 'an array nested 10,000 deep', expect: 'invalid', body: prefixed(`"x_deep":${deepArray(10_000).text}`) },
      { what: 'an object nested 10,000 deep', expect: 'invalid', body: prefixed(`"x_deep":${deepObject(10_000).text}`) },
      { what: 'nested 65 deep', expect: 'invalid', body: prefixed(`"x_deep":${deepArray(64).text}`) },
    ),
    // Prototype pollution: refused wherever it appears.
    fc.constantFrom<Case>(
      { what: '__proto__ at the top', expect: 'invalid', body: prefixed('"__proto__":{"polluted":"yes"}') },
      { what: '__proto__ nested', expect: 'invalid', body: prefixed('"x":[{"__proto__":{"polluted":"yes"}}]') },
      { what: 'constructor.prototype', expect: 'invalid', body: prefixed('"constructor":{"prototype":{"polluted":"yes"}}') },
      { what: '__proto__ escaped', expect: 'invalid', body: prefixed('"\\u005f_proto__":{"polluted":"yes"}') },
    ),
  ]
}

function aiCase(format: Format): fc.Arbitrary<Case> {
  return VALID_BODY[format].chain((valid) => {
    const fields = Object.keys(WRONG[format])
    const extraExpect: Expect = format === 'native' ? 'invalid' : 'either' // Anthropic/OpenAI pass unknown fields through
    return fc.oneof(
      { weight: 30, arbitrary: fc.constant<Case>({ what: 'valid', expect: 'valid', body: () => toJson(valid) }) },
      { weight: 4, arbitrary: fc.constantFrom('?model=x&model=y', '?stream=true&stream=false', '?__proto__[x]=1').map((q): Case => ({ what: `query ${q}`, expect: 'valid', body: () => toJson(valid), query: q })) },
      {
        weight: 25, arbitrary: fc.constantFrom(...fields).chain((f) => fc.constantFrom(...WRONG[format][f]!).map((v): Case => ({ what: `${f}: ${describe(v)}`, expect: 'invalid', body: () => toJson({ ...valid, [f]: v }) }))),
      },
      { weight: 6, arbitrary: fc.constantFrom(...REQUIRED[format]).map((f): Case => ({ what: `${f} missing`, expect: 'invalid', body: () => toJson(Object.fromEntries(Object.entries(valid).filter(([k]) => k !== f))) })) },
      { weight: 6, arbitrary: fc.tuple(fc.string({ minLength: 1, maxLength: 20 }), fc.jsonValue({ maxDepth: 3 })).map(([k, v]): Case => ({ what: 'an extra property', expect: extraExpect, body: () => toJson({ ...valid, [`x_${k}`]: v }) })) },
      { weight: 2, arbitrary: fc.constantFrom('constructor', 'prototype', 'hasOwnProperty', 'toString').map((k): Case => ({ what: `a "${k}" key`, expect: extraExpect, body: () => toJson({ ...valid, [k]: { prototype: 1 } }) })) },
      { weight: 2, arbitrary: fc.constant<Case>({ what: 'a 100,000-element array in an extra property', expect: extraExpect, body: () => toJson({ ...valid, x_huge: raw(`[${'0,'.repeat(99_999)}0]`) }) }) },
      // Duplicate keys: the last one wins (JSON.parse) — a bad last value is refused, a good one accepted.
      { weight: 4, arbitrary: fc.constantFrom(...REQUIRED[format]).chain((f) => fc.constantFrom(...WRONG[format][f]!).map((bad): Case => ({ what: `duplicate ${f}, bad last`, expect: 'invalid', body: () => toJson(valid).replace(/}$/, `,${JSON.stringify(f)}:${toJson(bad)}}`) }))) },
      { weight: 2, arbitrary: fc.constantFrom(...REQUIRED[format]).map((f): Case => ({ what: `duplicate ${f}, good last`, expect: 'either', body: () => `{${JSON.stringify(f)}:{"bad":1},${toJson(valid).slice(1)}` })) },
      { weight: 12, arbitrary: fc.oneof(...envelopeCases(valid)) },
    )
  })
}

/** Always sent, besides the generated ones: 100 KB and 1 MB prompts, and every special string at once. */
function fixedCases(format: Format): Case[] {
  const body = (prompt: string): Obj => format === 'anthropic' ? { model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: prompt }] }
    : format === 'openai' ? { model: 'gpt-4o', messages: [{ role: 'user', content: prompt }] } : { model: 'local-echo', prompt }
  return [
    { what: 'a 100 KB prompt', expect: 'valid', body: () => toJson(body(long(100_000))) },
    { what: 'a 1 MB prompt', expect: 'valid', body: () => toJson(body(long(1_000_000))) },
    { what: 'every special string', expect: 'valid', body: () => toJson(body(SPECIAL.join(' '))) },
  ]
}

function describe(v: unknown): string {
  const s = v instanceof Raw ? `raw ${v.text}` : JSON.stringify(v) ?? String(v)
  return s.length > 40 ? `${s.slice(0, 40)}… (${s.length} chars)` : s
}

// ---- checking answers ----

interface Answer {
  readonly status: number
  readonly contentType: string
  readonly text: string
  /** The body that was sent (input echoed back by a model is not a leak). */
  readonly sent: string
}

const LEAKS: RegExp[] = [/node_modules/, /\bat [\w.<>$]+ \([^)]*:\d+:\d+\)/, /[\w/.-]+\.(?:ts|js|mjs):\d+/, new RegExp(process.cwd().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), /\b(?:select|insert into|update|delete from)\b[\s\S]{0,80}\b(?:from|values|set|where)\b/i, /SQLITE_|sqlite3?\b|postgres|syntax error at or near/i, /FST_ERR|HPE_|ERR_[A-Z_]{4,}/]

/** Problems with one answer (empty when it is fine). The request body is passed so echoed input is not mistaken for a leak. */
function judge(format: Format | 'admin', c: Case, a: Answer): string[] {
  const out: string[] = []
  if (a.status >= 500) out.push(`5xx: ${a.status}`)
  const accepted = a.status < 300 || isPolicyDecision(format, a)
  if (c.expect === 'invalid' && !ALLOWED_4XX.has(a.status)) out.push(`invalid input answered ${a.status}, not a 4xx in the allowed set`)
  void accepted
  for (const re of LEAKS) {
    const m = re.exec(a.text)
    if (m && !a.sent.includes(m[0]) && !(c.query ?? '').includes(m[0])) out.push(`the answer leaks ${JSON.stringify(m[0].slice(0, 60))}`)
  }
  if (a.status >= 400) {
    if (!/^application\/(problem\+)?json; charset=utf-8$/.test(a.contentType)) out.push(`error content-type ${a.contentType}`)
    else {
      try {
        const j = JSON.parse(a.text) as any
        const okShape = format === 'anthropic' ? j.type === 'error' && typeof j.error?.type === 'string' && typeof j.error?.message === 'string'
          : format === 'openai' ? typeof j.error?.message === 'string' && typeof j.error?.type === 'string' && 'param' in j.error && typeof j.error?.code === 'string'
            : typeof j.error?.code === 'string' && typeof j.error?.message === 'string'
        if (!okShape) out.push(`error not in the ${format} shape: ${a.text.slice(0, 120)}`)
      } catch {
        out.push('error body is not JSON')
      }
    }
  } else if (a.status === 200 && format !== 'admin') {
    const streamed = a.contentType.startsWith('text/event-stream')
    if (!streamed && !a.contentType.startsWith('application/json')) out.push(`200 content-type ${a.contentType}`)
    if (!streamed) {
      try {
        const j = JSON.parse(a.text) as any
        const okShape = format === 'anthropic' ? j.type === 'message' && Array.isArray(j.content) : format === 'openai' ? j.object === 'chat.completion' && Array.isArray(j.choices) : typeof j.decision?.outcome === 'string'
        if (!okShape) out.push(`200 not in the ${format} shape: ${a.text.slice(0, 120)}`)
      } catch {
        out.push('200 body is not JSON')
      }
    }
  }
  return out
}

/** A refusal by the org's policy is an answer to a valid request, not a validation failure. */
function isPolicyDecision(format: Format | 'admin', a: Answer): boolean {
  if (format === 'admin' || a.status !== 403) return false
  return /blocked_by_policy|output_blocked|policy does not allow/.test(a.text)
}

/** Runs `run` over `items` with at most `n` in flight. */
async function pool<T>(items: readonly T[], n: number, run: (x: T, i: number) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      await run(items[i]!, i)
    }
  }
  await Promise.all(Array.from({ length: n }, worker))
}

function protoSnapshot(): string {
  return [Object.prototype, Array.prototype, Function.prototype, String.prototype].map((p) => Object.getOwnPropertyNames(p).sort().join()).join('|')
}

function assertUnpolluted(before: string): void {
  assert.equal(protoSnapshot(), before, 'Object.prototype (and Array/Function/String) untouched')
  assert.equal(({} as Record<string, unknown>)['polluted'], undefined)
  assert.equal(({} as Record<string, unknown>)['x'], undefined)
}

async function healthy(tg: TestApp): Promise<void> {
  const r = await fetch(`${tg.url}/healthz`, { signal: AbortSignal.timeout(10_000) })
  assert.equal(r.status, 200, 'the server keeps serving')
  await r.arrayBuffer()
  assert.equal(tg.app.server.listening, true)
}

function settledMemory(): { rss: number; heap: number } {
  gc()
  gc()
  const m = process.memoryUsage()
  return { rss: m.rss, heap: m.heapUsed }
}

function assertMemory(before: { rss: number; heap: number }, after: { rss: number; heap: number }, what: string): void {
  assert.ok(after.heap - before.heap < HEAP_GROWTH_BOUND, `heap grew ${mb(after.heap - before.heap)} MB over ${what}`)
  assert.ok(after.rss - before.rss < RSS_GROWTH_BOUND, `RSS grew ${mb(after.rss - before.rss)} MB over ${what}`)
}

const mb = (n: number) => Math.round(n / 1e6)

function report(t: TestContext, label: string, counts: Record<string, number>, failures: string[]): void {
  t.diagnostic(`${label}: ${Object.entries(counts).map(([k, v]) => `${k}=${v}`).join(' ')} (seed ${SEED})`)
  assert.deepEqual(failures.slice(0, 25), [], `${failures.length} failures — replay with TOLLGATE_FUZZ_SEED=${SEED}:\n${failures.slice(0, 25).join('\n')}`)
}

test(`T90 LIMIT-3: fast-check fuzzing of every AI endpoint (${RUNS} generated requests each, seed ${SEED}): 0 5xx, every invalid request a 4xx in the endpoint's shape, no leaks, still serving, prototypes untouched`, async (t) => {
  const tg = await startApp(t, { env: { TOLLGATE_BODY_LIMIT_BYTES: String(BODY_LIMIT) } })
  if (!tg) return
  const keys = await orgWithKeys(tg.deps)
  const proto = protoSnapshot()
  const tables = async () => {
    const out: Record<string, number> = {}
    for (const tbl of ['org', 'org_key', 'api_key', 'audit_event', 'user', 'membership', 'session'] as const) {
      const r = await tg.deps.db.db.selectFrom(tbl as 'org').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
      out[tbl] = Number(r.n)
    }
    return out
  }
  // Warm up (the classifier's model loads on first use), then measure memory from there.
  for (const format of ['anthropic', 'openai', 'native'] as const) {
    const warm = await send(tg, format, { what: 'warm', expect: 'valid', body: () => toJson(fc.sample(VALID_BODY[format], { seed: SEED, numRuns: 1 })[0]) }, keys.sandbox)
    assert.equal(warm.status, 200, warm.text.slice(0, 300))
  }
  const plan = (['anthropic', 'openai', 'native'] as const).map((format, k) => ({ format, cases: [...fixedCases(format), ...fc.sample(aiCase(format), { seed: SEED + k, numRuns: RUNS })] }))
  const rowsBefore = await tables()
  const memBefore = settledMemory()

  const failures: string[] = []
  const rejectedValid: string[] = []
  const counts: Record<string, number> = { requests: 0, valid: 0, accepted: 0, invalid: 0, either: 0, '4xx': 0, '5xx': 0 }
  for (const { format, cases } of plan) {
    for (let b = 0; b < cases.length; b += BATCH) {
      await pool(cases.slice(b, b + BATCH), CONCURRENCY, async (c, i) => {
        const a = await send(tg, format, c, keys.sandbox)
        counts['requests']!++
        counts[c.expect]!++
        if (a.status >= 500) counts['5xx']!++
        else if (a.status >= 400) counts['4xx']!++
        const accepted = a.status < 300 || isPolicyDecision(format, a)
        if (c.expect === 'valid' && accepted) counts['accepted']!++
        if (c.expect === 'valid' && !accepted) rejectedValid.push(`${format} #${b + i} (${c.what}): valid request answered ${a.status} ${a.text.slice(0, 160)}`)
        for (const p of judge(format, c, a)) failures.push(`${format} #${b + i} (${c.what}): ${p}`)
      })
      await healthy(tg)
      assertUnpolluted(proto)
    }
  }
  const memAfter = settledMemory()
  // Valid requests: ≥ 99% accepted (a policy refusal is an answer too).
  const acceptance = counts['accepted']! / Math.max(1, counts['valid']!)
  report(t, 'AI endpoints', { ...counts, heap_growth_mb: mb(memAfter.heap - memBefore.heap), rss_growth_mb: mb(memAfter.rss - memBefore.rss) }, failures)
  assert.ok(counts['requests']! >= RUNS * 3)
  assert.ok(acceptance >= 0.99, `${Math.round(acceptance * 1000) / 10}% of valid requests accepted (seed ${SEED}):\n${rejectedValid.slice(0, 10).join('\n')}`)
  assert.ok(counts['invalid']! >= RUNS, 'most generated requests are invalid')
  assertUnpolluted(proto)
  // Nothing but decision records was written.
  assert.deepEqual(await tables(), rowsBefore, 'no row other than decision records changed')
  assertMemory(memBefore, memAfter, `${counts['requests']} requests`)
})

async function send(tg: TestApp, format: Format, c: Case, key: string): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': c.contentType ?? 'application/json' }
  if (c.auth === undefined) headers[format === 'anthropic' ? 'x-api-key' : 'authorization'] = format === 'anthropic' ? key : `Bearer ${key}`
  if (c.auth === 'bad') headers['authorization'] = `Bearer ${key.slice(0, -4)}AAAA`
  const sent = c.body()
  const res = await fetch(tg.url + PATHS[format] + (c.query ?? ''), { method: 'POST', headers, body: sent, signal: AbortSignal.timeout(60_000) })
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', text: await res.text(), sent }
}

// ---- the admin API ----

type Schema = { type?: string | string[]; properties?: Record<string, Schema>; required?: string[]; maxLength?: number; minLength?: number; maximum?: number; minimum?: number; maxItems?: number; minItems?: number; pattern?: string; enum?: unknown[]; items?: Schema; additionalProperties?: boolean }

/** Values of each JSON type (by their own type), for type flips. */
const BY_TYPE: Record<string, unknown[]> = {
  string: ['1', 'true', 'x', 'null'], integer: [42, 0, -1], number: [1.5, -0.25], boolean: [true, false],
  array: [[], ['x'], raw(`[${'0,'.repeat(99_999)}0]`)], object: [{}, { a: 1 }], null: [null],
}

/** Values that break `s`, each certainly refused by the schema (checked against its own pattern). */
function schemaViolations(s: Schema): unknown[] {
  const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : []
  if (types.length === 0) return []
  const out: unknown[] = []
  for (const [type, values] of Object.entries(BY_TYPE)) {
    if (types.includes(type) || (type === 'integer' && types.includes('number'))) continue
    out.push(...values)
  }
  if (s.maxLength !== undefined) out.push('x'.repeat(s.maxLength + 1), '\u202E'.repeat(s.maxLength + 1), 'y'.repeat(Math.max(s.maxLength + 1, 1_000_000)))
  if (s.minLength !== undefined && s.minLength > 0) out.push('')
  if (s.maximum !== undefined) out.push(s.maximum + 1, raw('1e400'))
  if (s.minimum !== undefined) out.push(s.minimum - 1, raw('-1e400'))
  if (s.enum !== undefined) out.push(...['NOT-IN-ENUM', '\u0000', String(s.enum[0]).toLowerCase(), String(s.enum[0]).toUpperCase(), ` ${String(s.enum[0])}`].filter((v) => !s.enum!.includes(v)))
  if (s.pattern !== undefined) {
    const re = new RegExp(s.pattern, 'u')
    out.push(...['\uD800', '<script>', '../x', ' ', '\u0000', 'a\nb', '\u202E'].filter((v) => !re.test(v)))
  }
  if (s.maxItems !== undefined) out.push(Array.from({ length: s.maxItems + 1 }, () => 'a'))
  if (s.minItems !== undefined && s.minItems > 0) out.push([])
  if (types.includes('array') && s.items?.type === 'string') out.push([42], raw(`[${'0,'.repeat(99_999)}0]`))
  return out
}

/** Strings that may or may not be accepted (no pattern forbids them): only "no 5xx, no leak" is required. */
const ODD_STRINGS = fc.oneof(text, fc.constantFrom(...SPECIAL))

function adminCase(route: string, schema: Schema | undefined, valid: Obj, freeForm: boolean): fc.Arbitrary<Case> {
  const props = Object.entries(schema?.properties ?? {})
  const required = schema?.required ?? []
  const arbs: { weight: number; arbitrary: fc.Arbitrary<Case> }[] = [
    { weight: 4, arbitrary: fc.constant<Case>({ what: 'valid', expect: 'either', body: () => toJson(valid) }) },
    { weight: 1, arbitrary: fc.constant<Case>({ what: 'no CSRF token', expect: 'invalid', body: () => toJson(valid), noCsrf: true }) },
    { weight: 12, arbitrary: fc.oneof(...envelopeCases(valid)) },
  ]
  if (!freeForm) {
    arbs.push({ weight: 6, arbitrary: fc.tuple(fc.string({ minLength: 1, maxLength: 20 }), fc.jsonValue({ maxDepth: 2 })).map(([k, v]): Case => ({ what: 'an unknown property', expect: 'invalid', body: () => toJson({ ...valid, [`x_${k}`]: v }) })) })
    arbs.push({ weight: 2, arbitrary: fc.constantFrom('constructor', 'prototype', 'toString').map((k): Case => ({ what: `a "${k}" property`, expect: 'invalid', body: () => toJson({ ...valid, [k]: 1 }) })) })
  }
  const breakable = props.map(([name, s]) => [name, schemaViolations(s)] as const).filter(([, v]) => v.length > 0)
  if (!freeForm && breakable.length > 0) {
    arbs.push({ weight: 30, arbitrary: fc.constantFrom(...breakable).chain(([name, values]) => fc.constantFrom(...values).map((v): Case => ({ what: `${name}: ${describe(v)}`, expect: 'invalid', body: () => toJson({ ...valid, [name]: v }) }))) })
    arbs.push({ weight: 4, arbitrary: fc.constantFrom(...breakable).chain(([name, values]) => fc.constantFrom(...values).map((v): Case => ({ what: `duplicate ${name}, bad last`, expect: 'invalid', body: () => toJson(valid).replace(/}$/, `${Object.keys(valid).length > 0 ? ',' : ''}${JSON.stringify(name)}:${toJson(v)}}`) }))) })
  }
  const present = required.filter((r) => r in valid)
  if (present.length > 0) arbs.push({ weight: 5, arbitrary: fc.constantFrom(...present).map((f): Case => ({ what: `${f} missing`, expect: 'invalid', body: () => toJson(Object.fromEntries(Object.entries(valid).filter(([k]) => k !== f))) })) })
  const strings = props.filter(([, s]) => s.type === 'string' && s.pattern === undefined && s.enum === undefined)
  if (strings.length > 0) arbs.push({ weight: 3, arbitrary: fc.tuple(fc.constantFrom(...strings), ODD_STRINGS).map(([[name, s], v]): Case => ({ what: `${name}: odd text`, expect: s.maxLength !== undefined && v.length > s.maxLength ? 'invalid' : 'either', body: () => toJson({ ...valid, [name]: v }) })) })
  void route
  return fc.oneof(...arbs)
}

test(`T90 LIMIT-3: fast-check fuzzing of every admin POST/PATCH/PUT route (${RUNS} generated requests each, seed ${SEED}): 0 5xx, every invalid request a 4xx in Tollgate's shape, refused requests change no row, no leaks, still serving`, async (t) => {
  const tg = await startApp(t, { env: { TOLLGATE_BODY_LIMIT_BYTES: String(BODY_LIMIT) } })
  if (!tg) return
  const orgId = (await tg.deps.orgs.create('fuzz-org', { type: 'operator', id: null }))!.id
  const spareOrg = (await tg.deps.orgs.create('fuzz-spare', { type: 'operator', id: null }))!.id
  const owner: Person = await person(tg, orgId, 'OWNER')
  const c: Ctx = { tg, owner, orgId, spareOrg }
  const proto = protoSnapshot()
  const openapi = tg.app.swagger() as { paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: Schema }> } }>> }
  const routes = apiRoutes(tg.app.printRoutes({ commonPrefix: false })).filter((r) => /^(POST|PATCH|PUT) /.test(r))
  assert.ok(routes.length >= 15, `${routes.length} admin routes take a body`)
  assert.deepEqual(routes.filter((r) => !(r in VALID)), [], 'every admin POST/PATCH/PUT route has a valid fixture in test/api/fixtures.ts')
  const FREE_FORM = new Set(['POST /api/me/passkeys', 'POST /api/me/step-up'])

  const fixtures = new Map<string, Valid>()
  for (const r of routes) fixtures.set(r, await VALID[r]!(c))
  const pathOf = (template: string, params: Record<string, string>) => template.replace(':org', orgId).replace(/:([a-z]+)/g, (_, n: string) => encodeURIComponent(params[n]!))
  const plan = routes.map((route, k) => {
    const [method, template] = route.split(' ') as [string, string]
    const v = fixtures.get(route)!
    const schema = openapi.paths[template.replace(/:(\w+)/g, '{$1}')]?.[method.toLowerCase()]?.requestBody?.content['application/json']?.schema
    const cases = fc.sample(adminCase(route, schema, (v.body ?? {}) as Obj, FREE_FORM.has(route)), { seed: SEED + k, numRuns: RUNS })
    return { route, method, path: pathOf(template, v.params), cases }
  })

  const failures: string[] = []
  const counts: Record<string, number> = { requests: 0, invalid: 0, either: 0, '4xx': 0, '5xx': 0, routes: routes.length }
  const sendAdmin = async (method: string, path: string, x: Case): Promise<Answer> => {
    const sent = x.body()
    const r = await call(tg, x.auth === undefined ? owner : undefined, method, path + (x.query ?? ''), undefined, {
      raw: sent, contentType: x.contentType ?? 'application/json', noCsrf: x.noCsrf === true,
      ...(x.auth === 'bad' ? { headers: { cookie: `${SESSION_COOKIE}=${'A'.repeat(43)}`, 'x-csrf-token': owner.csrf } } : {}),
    })
    return { status: r.status, contentType: r.headers.get('content-type') ?? '', text: r.text, sent }
  }
  const check = (route: string, i: number, x: Case, a: Answer) => {
    counts['requests']!++
    counts[x.expect === 'valid' ? 'either' : x.expect]!++
    if (a.status >= 500) counts['5xx']!++
    else if (a.status >= 400) counts['4xx']!++
    for (const p of judge('admin', x, a)) failures.push(`${route} #${i} (${x.what}): ${p}`)
  }

  // Phase 1: every certainly-invalid request, concurrently — and afterwards no row anywhere has changed.
  const before = await tableState(tg)
  const memBefore = settledMemory()
  for (const p of plan) {
    const invalid = p.cases.map((x, i) => ({ x, i })).filter(({ x }) => x.expect === 'invalid')
    for (let b = 0; b < invalid.length; b += BATCH) {
      await pool(invalid.slice(b, b + BATCH), CONCURRENCY, async ({ x, i }) => check(p.route, i, x, await sendAdmin(p.method, p.path, x)))
      await healthy(tg)
      assertUnpolluted(proto)
    }
  }
  const memAfter = settledMemory()
  // Denied access is audited by design (AUDIT-1: a forged request, a failed step-up); nothing else may change.
  assert.deepEqual(failures.slice(0, 25), [], `${failures.length} failures — replay with TOLLGATE_FUZZ_SEED=${SEED}:\n${failures.slice(0, 25).join('\n')}`)
  const audited = (line: string) => line.startsWith('audit_event + ') && /\["outcome","(denied|fail)/.test(line)
  assert.deepEqual(stateDiff(before, await tableState(tg)).filter((l) => !audited(l)), [], 'a refused admin request changed stored data')

  // Phase 2: the valid and maybe-valid ones, one at a time (they change state; concurrency is not what is tested here).
  for (const p of plan) {
    const rest = p.cases.map((x, i) => ({ x, i })).filter(({ x }) => x.expect !== 'invalid')
    for (const { x, i } of rest) check(p.route, i, x, await sendAdmin(p.method, p.path, x))
    await healthy(tg)
  }
  report(t, 'admin routes', { ...counts, heap_growth_mb: mb(memAfter.heap - memBefore.heap), rss_growth_mb: mb(memAfter.rss - memBefore.rss) }, failures)
  assert.ok(counts['requests']! >= RUNS * routes.length)
  assertUnpolluted(proto)
  assertMemory(memBefore, memAfter, 'the refused admin requests')
})
