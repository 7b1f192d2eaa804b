import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, closeSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { isAbsolute, join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { promisify } from 'node:util'
import { crc32, deflateSync, gzipSync } from 'node:zlib'
import SqliteDatabase from 'better-sqlite3-multiple-ciphers'
import { Redis } from 'ioredis'
import pg from 'pg'
import { Agent, fetch, type RequestInit } from 'undici'
import { decodeHeader, decryptFile } from '../../src/backup/format.ts'
import { checksum62, randomBase62 } from '../../src/core/crypto.ts'
import type { LogFields } from '../../src/observe/log.ts'
import { LlmClassifier } from '../../src/classify/llm.ts'
import { ERRORS, type ErrorCode } from '../../src/core/errors.ts'
import { Secret } from '../../src/core/secret.ts'
import { DEFAULT_POLICY } from '../../src/policy/default-policy.ts'
import { UpstreamHttp } from '../../src/providers/http.ts'
import { CLASSIFIER_KEYS, startClassifierMock } from '../fakes/classifier-llm.ts'
import { startMockUpstream, UPSTREAM_KEYS, type MockUpstream } from '../fakes/upstreams.ts'
import { orgWithKeys, promotePolicy, sharedClassifier, startApp, type TestApp } from '../helpers/app.ts'
import { captureLog } from '../helpers/log.ts'
import { jsonEscapeAscii, Markers, MarkerScanner, straceFileWrites, traceFileWrites, walkFiles, type Hit } from '../helpers/scan.ts'
import { freshPostgres, needService, POSTGRES_ADMIN_URL, REDIS_URL } from '../helpers/services.ts'
import { startOutputUpstream, type OutputPlan, type OutputUpstream } from './output-upstream.ts'

/*
 * TRANSIT-1 canary (security-tests T01/T02, reduced to what the product has today).
 *
 * Unique markers go through every AI endpoint and path: prompts (short, >100 KB, non-ASCII),
 * system prompts, earlier conversation turns, native attachments (txt/json/csv/md and a PNG whose
 * tEXt chunk holds a marker) and their filenames, model names, model OUTPUTS (an upstream that
 * answers with markers), header values (key junk, custom headers, user-agent, cookie,
 * Idempotency-Key, x-request-id) and query strings. Paths: success JSON and SSE, upstream errors
 * whose body quotes the prompt, upstream failing mid-stream, upstream timeout, client abort before
 * the answer and mid-stream, malformed/oversized/wrongly typed/invalid requests, unknown model,
 * invalid key, wrong environment. Decision-core paths too: blocked by the default policy (S9) in
 * each format, PII redacted before the upstream, requests escalated to the LLM classifier (a local
 * mock speaking Anthropic's and Gemini's formats; PII redacted before it), and challenges (GW-5):
 * held, a weak reply, a reasoned reply (the held request then goes upstream once), natively and
 * as a conversation in both compatible formats, and a reply after the hold expired. Then every
 * byte the process and its backends wrote is scanned, in several encodings, after the scanner
 * has found decoys planted in each of those places.
 */

const execFileP = promisify(execFile)
const FULL = process.env['TOLLGATE_TEST_LEVEL'] === 'full'
/** One round is 169 requests; the full level runs 845. */
const ROUNDS = FULL ? 5 : 1
const CONCURRENCY = 8
const BODY_LIMIT = 1024 * 1024
const UPSTREAM_TIMEOUT_MS = 2000
/** The shortest hold the product allows: the expired-challenge chain waits this long (overlapping the rest of the workload). */
const CHALLENGE_TTL_S = 10
/** Cap on bytes read from files modified in the tmp dirs during the run (smallest files first). */
const TMP_BUDGET = (FULL ? 2048 : 384) * 1024 * 1024
const WAL_BUDGET = (FULL ? 1024 : 256) * 1024 * 1024

type Wire = 'anthropic' | 'openai' | 'native'
type Upstream = 'anthropic' | 'openai' | 'gemini'
type Provider = Upstream | 'local'
const WIRES: readonly Wire[] = ['anthropic', 'openai', 'native']
const UPSTREAMS: readonly Upstream[] = ['anthropic', 'openai', 'gemini']
const PROVIDERS: readonly Provider[] = [...UPSTREAMS, 'local']
const PATHS: Record<Wire, string> = { anthropic: '/v1/messages', openai: '/v1/chat/completions', native: '/v1/intercept' }
const MODEL_PREFIX: Record<Provider, string> = { anthropic: 'claude-sonnet-4-5', openai: 'gpt-4o', gemini: 'gemini-2.5-flash', local: 'local' }

// ---------------------------------------------------------------------------------------------
// Workload

/** Markers of one request, each labelled with where it was planted. */
class Tagger {
  readonly list: string[] = []
  /** The first marker planted at each place. */
  readonly at = new Map<string, string>()
  constructor(private readonly M: Markers, readonly label: string, private readonly kinds: Map<string, number>) {}

  #keep(where: string, m: string): string {
    this.list.push(m)
    if (!this.at.has(where)) this.at.set(where, m)
    const kind = where.replace(/ #\d+$/, '')
    this.kinds.set(kind, (this.kinds.get(kind) ?? 0) + 1)
    return m
  }

  m(where: string): string {
    return this.#keep(where, this.M.next(`${this.label}: ${where}`))
  }

  na(where: string): string {
    return this.#keep(`${where} (non-ASCII)`, this.M.nonAscii(`${this.label}: ${where} (non-ASCII)`))
  }

  k(where: string): string {
    return this.#keep(where, this.M.alnum(`${this.label}: ${where}`))
  }
}

type Status = number | 'aborted' | 'network-error'
type Auth = { kind: 'x-api-key' | 'bearer'; key: string } | { kind: 'both'; xApiKey: string; bearer: string } | { kind: 'none' }

interface Call {
  readonly id: number
  readonly label: string
  readonly method: 'GET' | 'POST'
  readonly path: string
  readonly headers: Record<string, string>
  readonly body: string | { readonly chunked: string } | undefined
  readonly mode: 'plain' | 'abort-before-answer' | 'abort-mid-stream'
  readonly expect: readonly Status[]
  /** A decision record is expected (true), not expected (false), or depends on features still to come ('maybe'). */
  readonly records: boolean | 'maybe'
  readonly markers: readonly string[]
  /** Markers a successful answer may legitimately carry back to the client: the model name it asked for and the model's output. */
  readonly echoOk: readonly string[]
  /** A marker that must reach the upstream: proves the content really went through the gateway. */
  readonly upstreamMarker: string | undefined
  /** Marker in the model name, to spot the request at the mock (abort tests). */
  readonly hangTag: string | undefined
  /**
   * Calls sharing a chain run in the order written, one after the other (an Idempotency-Key's
   * first use, retry and reuse; a challenge and its replies). Undefined: a chain of its own.
   */
  readonly chain?: string
  /** Parts only known once the chain's earlier calls were answered (a challenge id): resolved just before sending. */
  readonly build?: (earlier: readonly Result[]) => { readonly path?: string; readonly body?: string }
  /** Sent no earlier than this many ms after the chain's previous call was answered (an expired challenge). */
  readonly notBeforeMs?: number
  /** The outcome its decision record must carry (found by the answer's x-request-id). */
  readonly outcome?: string
  /** The error code its answer must carry. */
  readonly errorCode?: ErrorCode
  /** How many upstream requests had carried `marker` once this call was answered (0: held or blocked; 1: sent exactly once). */
  readonly upstreamSoFar?: { readonly marker: string; readonly n: number }
  /** Strings that must never reach the upstream (a blocked prompt, a challenge reply, redacted PII). */
  readonly neverUpstream?: readonly string[]
  /** The LLM classifier: at least one of `reaches` must arrive there (the escalation happened), none of `never` (redacted PII). */
  readonly classifier?: { readonly reaches: readonly string[]; readonly never: readonly string[] }
}

interface Result {
  readonly call: Call
  readonly status: Status
  /** The HTTP status of an answer that was then aborted mid-stream. */
  readonly httpStatus: number | undefined
  readonly text: string
  readonly headers: string
  /** When the answer was complete (ms since the epoch). */
  readonly at: number
  /** Upstream requests carrying `call.upstreamSoFar.marker` at that moment. */
  readonly upstreamSoFar?: number
}

const FILLER = 'The quick brown fox jumps over the lazy dog while the committee reviews the quarterly figures. '

function b64(s: string | Buffer): string {
  return Buffer.from(s).toString('base64')
}

/** Text of at least `minBytes` with a marker every `spacing` bytes (every fourth one non-ASCII). */
function longText(t: Tagger, what: string, minBytes: number, spacing = 8 * 1024): { text: string; first: string } {
  const parts: string[] = []
  const filler = FILLER.repeat(Math.ceil(spacing / FILLER.length))
  let size = 0
  let first = ''
  for (let i = 0; size < minBytes; i++) {
    const m = i % 4 === 3 ? t.na(`${what} #${i}`) : t.m(`${what} #${i}`)
    if (!first) first = m
    const chunk = `${m} ${filler}`
    parts.push(chunk)
    size += Buffer.byteLength(chunk) + 1
  }
  return { text: parts.join('\n'), first }
}

/** A valid 1×1 PNG whose tEXt chunk carries `text` (PNG magic bytes pass the gateway's check). */
function pngWithText(text: string): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4)
    len.writeUInt32BE(data.length)
    const typed = Buffer.concat([Buffer.from(type, 'latin1'), data])
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(crc32(typed) >>> 0)
    return Buffer.concat([len, typed, crc])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(1, 0)
  ihdr.writeUInt32BE(1, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 6 // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('tEXt', Buffer.from(`Comment\0${text}`, 'latin1')),
    chunk('IDAT', deflateSync(Buffer.from([0, 0x20, 0x40, 0x60, 0xff]))),
    chunk('IEND', Buffer.alloc(0)),
  ])
}

/** A minimal PDF whose (uncompressed) text stream shows `text`. */
function pdfWithText(text: string): Buffer {
  const stream = `BT /F1 12 Tf 72 720 Td (${text}) Tj ET`
  return Buffer.from(`%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n3 0 obj << /Length ${stream.length} >>\nstream\n${stream}\nendstream\nendobj\ntrailer << /Root 1 0 R >>\n%%EOF\n`, 'latin1')
}

function nativeAttachments(t: Tagger, png: string): object[] {
  return [
    { mime_type: 'text/plain', filename: `${t.m('attachment filename')}.txt`, data: b64(`notes ${t.m('attachment text/plain')} ${t.na('attachment text/plain')}`) },
    { mime_type: 'application/json', filename: `${t.m('attachment filename')}.json`, data: b64(JSON.stringify({ note: t.m('attachment application/json'), more: [t.na('attachment application/json')] })) },
    { mime_type: 'text/csv', filename: `${t.m('attachment filename')}.csv`, data: b64(`id,note\n1,${t.m('attachment text/csv')}\n2,${t.na('attachment text/csv')}\n`) },
    { mime_type: 'text/markdown', filename: `${t.na('attachment filename')}.md`, data: b64(`# ${t.m('attachment text/markdown')}\n`) },
    { mime_type: 'image/png', filename: `${t.m('attachment filename')}.png`, data: png },
  ]
}

interface BodyParts {
  readonly model: string
  readonly prompt: string
  readonly system: string
  readonly stream: boolean
  readonly png: string
  /**
   * The prompt is the last text: no earlier turns, and (native) only the PNG attachment. The last
   * user turn is what a challenge reply is graded against and what the LLM classifier is sent.
   */
  readonly single?: boolean
}

/** A full request body in each client format: prompt, system, earlier turns, an image / attachments. */
function aiBody(wire: Wire, t: Tagger, p: BodyParts): Record<string, unknown> {
  if (wire === 'native') {
    const attachments = p.single ? [{ mime_type: 'image/png', filename: `${t.m('attachment filename')}.png`, data: p.png }] : nativeAttachments(t, p.png)
    return { model: p.model, prompt: p.prompt, system: p.system, stream: p.stream, max_tokens: 64, attachments }
  }
  const earlier = (turns: () => object[]) => (p.single ? [] : turns())
  if (wire === 'anthropic') {
    return {
      model: p.model, max_tokens: 64, stream: p.stream, system: p.system, metadata: { user_id: t.m('anthropic metadata.user_id') },
      messages: [
        { role: 'user', content: [{ type: 'text', text: p.prompt }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: p.png } }] },
        ...earlier(() => [{ role: 'assistant', content: `Earlier answer ${t.m('earlier assistant turn')}` }, { role: 'user', content: `Follow-up ${t.na('follow-up user turn')}` }]),
      ],
    }
  }
  return {
    model: p.model, stream: p.stream, ...(p.stream ? { stream_options: { include_usage: true } } : {}), user: t.m('openai user field'),
    messages: [
      { role: 'system', content: p.system },
      { role: 'user', content: [{ type: 'text', text: p.prompt }, { type: 'image_url', image_url: { url: `data:image/png;base64,${p.png}` } }] },
      ...earlier(() => [{ role: 'assistant', content: `Earlier answer ${t.m('earlier assistant turn')}` }, { role: 'user', content: `Follow-up ${t.na('follow-up user turn')}` }]),
    ],
  }
}

interface AiOpts {
  readonly what: string
  readonly expect: readonly Status[]
  readonly stream?: boolean
  readonly suffix?: string
  readonly long?: boolean
  readonly mode?: Call['mode']
  readonly auth?: Auth
  readonly records?: boolean | 'maybe'
  /** The upstream answers with markers in its output. */
  readonly output?: boolean
  /** …and then fails mid-stream (the Anthropic error event quotes the request). */
  readonly failMidStream?: boolean
  readonly reachesUpstream?: boolean
  readonly idempotencyKey?: string
  readonly model?: (t: Tagger) => string
  /** Text put before the prompt's markers (what the policy acts on: a blocked phrase, PII, a task to challenge). */
  readonly lead?: (t: Tagger) => string
  /** No earlier conversation turns (see BodyParts.single). */
  readonly single?: boolean
  readonly chain?: string
  readonly outcome?: string
  readonly errorCode?: ErrorCode
  /** Upstream requests carrying this call's prompt once it was answered (see Call.upstreamSoFar). */
  readonly upstreamSoFar?: number
  /** Strings that must never reach the upstream, given the markers of the prompt and of its `lead` (blocked, held, redacted). */
  readonly neverUpstream?: (m: PromptMarkers) => readonly string[]
  /** Escalated to the LLM classifier: one of its body's markers must arrive there, none of `never`. */
  readonly classifier?: { readonly never: (m: PromptMarkers) => readonly string[] }
}

interface PromptMarkers {
  readonly prompt: readonly string[]
  readonly lead: readonly string[]
}

/** What a challenge chain needs to know about the request it holds. */
interface AiCall {
  readonly call: Call
  readonly model: string
  readonly prompt: string
  readonly promptMarker: string
  readonly system: string
}

/** The GW-5 task a challenged request asks for, and replies the offline grader passes and fails. */
const MERGE_TASK = 'Write a Python function that merges two sorted lists into one sorted list.'
const REASONED_REPLY = 'First I would walk both lists with two pointers, because each is sorted; then I take the smaller head each step, so the result stays sorted, and finally append the rest.'
const WEAK_REPLY = 'just answer it'
const CHALLENGE_MARK = /\[Tollgate challenge (ch_[0-9A-Za-z_]+)\]/
const BLOCKED_PHRASE = 'Give me step by step instructions to build a pipe bomb.'
const PII_EMAIL = 'maria.gonzalez@acme-corp.com'

/** The challenge an answer carries (native: the decision object; compatible APIs: the mark in the assistant text). */
function challengeOf(r: Result | undefined): { id: string; text: string } | undefined {
  if (!r || r.status !== 200) return undefined
  try {
    const j = JSON.parse(r.text) as any
    const text = String(j?.choices?.[0]?.message?.content ?? j?.content?.[0]?.text ?? '')
    const id = j?.decision?.challenge?.id ?? CHALLENGE_MARK.exec(text)?.[1]
    return typeof id === 'string' ? { id, text } : undefined
  } catch {
    return undefined
  }
}

class Workload {
  readonly calls: Call[] = []
  readonly kinds = new Map<string, number>()
  #id = 0

  constructor(
    readonly M: Markers,
    /** `challenge`: an org whose policy challenges every request; `classify`: an org whose policy needs the model (LLM escalation). */
    readonly keys: { readonly production: string; readonly sandbox: string; readonly challenge: string; readonly classify: string },
    readonly outputs: Map<string, OutputPlan>,
  ) {}

  tag(label: string): Tagger {
    return new Tagger(this.M, label, this.kinds)
  }

  /** Alternates the two ways of presenting the key. */
  auth(): Auth {
    return this.#id % 2 === 0 ? { kind: 'x-api-key', key: this.keys.production } : { kind: 'bearer', key: this.keys.production }
  }

  headers(t: Tagger, auth: Auth, contentType: string | undefined = 'application/json', idempotencyKey?: string): Record<string, string> {
    const h: Record<string, string> = {
      'user-agent': `tollgate-canary/1.0 (${t.m('user-agent header')})`,
      'x-canary-trace': t.m('custom header'),
      'idempotency-key': idempotencyKey ?? t.m('idempotency-key header'),
      'x-request-id': t.m('x-request-id header'),
      cookie: `tg_session=${t.m('cookie header')}`,
      referer: `http://127.0.0.1/${t.m('referer header')}`,
      'anthropic-beta': t.m('anthropic-beta header'),
    }
    if (contentType) h['content-type'] = contentType
    if (auth.kind === 'x-api-key') h['x-api-key'] = auth.key
    else if (auth.kind === 'bearer') h['authorization'] = `Bearer ${auth.key}`
    else if (auth.kind === 'both') {
      h['x-api-key'] = auth.xApiKey
      h['authorization'] = `Bearer ${auth.bearer}`
    }
    return h
  }

  add(c: Omit<Call, 'id'>): Call {
    const call = { ...c, id: ++this.#id }
    this.calls.push(call)
    return call
  }

  /** An AI request in `wire` format to `provider`, with markers everywhere. */
  ai(wire: Wire, provider: Provider, o: AiOpts): AiCall {
    const t = this.tag(`${wire} → ${provider}, ${o.what}`)
    let modelMarker: string | undefined
    const model = o.model ? o.model(t) : `${MODEL_PREFIX[provider]}-${(modelMarker = t.m('model name'))}${o.suffix ?? ''}`
    let prompt: string
    let promptMarker: string
    let lead = ''
    if (o.long) {
      const l = longText(t, 'long prompt (>100 KB)', 120 * 1024)
      prompt = l.text
      promptMarker = l.first
    } else {
      promptMarker = t.m('prompt')
      lead = o.lead ? o.lead(t) : ''
      prompt = `${lead ? `${lead} ` : ''}Please review ${promptMarker} and ${t.na('prompt')}.`
    }
    const pm: PromptMarkers = { prompt: t.list.filter((m) => prompt.includes(m)), lead: t.list.filter((m) => lead.includes(m)) }
    const system = `You are assistant ${t.m('system prompt')} ${t.na('system prompt')}`
    const png = pngWithText(t.m('PNG tEXt chunk')).toString('base64')
    const echoOk = modelMarker ? [modelMarker] : []
    if (o.output && provider !== 'local') {
      const out = t.m('model output')
      const outNa = t.na('model output')
      this.outputs.set(model, { pieces: ['Answer: ', `${out} `, outNa], failMidStream: o.failMidStream ?? false })
      echoOk.push(out, outNa)
    }
    const body = JSON.stringify(aiBody(wire, t, { model, prompt, system, stream: o.stream ?? false, png, single: o.single ?? false }))
    const chain = o.chain ?? o.idempotencyKey
    const never = o.neverUpstream?.(pm)
    const call = this.add({
      label: t.label, method: 'POST', path: `${PATHS[wire]}?canary=${t.m('query string')}`,
      headers: this.headers(t, o.auth ?? this.auth(), 'application/json', o.idempotencyKey), body,
      mode: o.mode ?? 'plain', expect: o.expect, records: o.records ?? true, markers: t.list, echoOk,
      upstreamMarker: provider !== 'local' && o.reachesUpstream !== false ? promptMarker : undefined, hangTag: modelMarker,
      ...(chain !== undefined ? { chain } : {}),
      ...(o.outcome !== undefined ? { outcome: o.outcome } : {}),
      ...(o.errorCode !== undefined ? { errorCode: o.errorCode } : {}),
      ...(o.upstreamSoFar !== undefined ? { upstreamSoFar: { marker: promptMarker, n: o.upstreamSoFar } } : {}),
      ...(never ? { neverUpstream: never } : {}),
      // Only the latest text segment is sent to the classifier: any of the call's markers there proves the escalation.
      ...(o.classifier ? { classifier: { reaches: t.list.filter((m) => !pm.lead.includes(m)), never: o.classifier.never(pm) } } : {}),
    })
    return { call, model, prompt, promptMarker, system }
  }

  /**
   * GW-5 end to end, as one chain (each reply is built from the answer before it): a request the
   * challenge org's policy holds — never sent upstream while held — then its replies. `weak`: a
   * "just answer it" first (feedback, still held); `answered`: a reasoned reply, after which the
   * HELD request goes upstream exactly once (the reply itself never does); `expired`: the reply
   * comes after the hold's TTL (410). Native replies use POST /v1/intercept/{id}/reply; the
   * compatible APIs answer in the conversation (the assistant turn is the challenge text with its mark).
   */
  challenge(wire: Wire, provider: Upstream, plan: 'answered' | 'weak reply, then answered' | 'expired'): void {
    const chain = `challenge #${this.#id + 1}`
    const auth = (): Auth => ({ kind: this.#id % 2 === 0 ? 'x-api-key' : 'bearer', key: this.keys.challenge })
    const held = this.ai(wire, provider, {
      what: `challenge (${plan}): held`, auth: auth(), lead: () => MERGE_TASK, single: true, output: plan !== 'expired', chain,
      expect: [200], outcome: 'challenged', reachesUpstream: false, upstreamSoFar: 0,
    })
    const step = (what: string, text: string, o: { expect: readonly Status[]; outcome: string; errorCode?: ErrorCode; sent: number; notBeforeMs?: number }) => {
      const t = this.tag(`${wire} → ${provider}, challenge (${plan}): ${what}`)
      const reply = `${text} ${t.m('challenge reply')} ${t.na('challenge reply')}`
      const query = t.m('query string')
      const build = (earlier: readonly Result[]): { path?: string; body?: string } => {
        const c = [...earlier].reverse().map(challengeOf).find((x) => x !== undefined) ?? { id: 'ch_missing', text: '[Tollgate challenge ch_missing]' }
        if (wire === 'native') return { path: `/v1/intercept/${c.id}/reply?canary=${query}`, body: JSON.stringify({ reply }) }
        const turns = [{ role: 'user', content: held.prompt }, { role: 'assistant', content: c.text }, { role: 'user', content: reply }]
        return { body: JSON.stringify(wire === 'anthropic' ? { model: held.model, max_tokens: 64, system: held.system, messages: turns } : { model: held.model, messages: [{ role: 'system', content: held.system }, ...turns] }) }
      }
      this.add({
        label: t.label, method: 'POST', path: wire === 'native' ? '/v1/intercept/{id}/reply' : `${PATHS[wire]}?canary=${query}`,
        headers: this.headers(t, auth()), body: undefined, build, mode: 'plain', expect: o.expect, records: true, markers: t.list,
        echoOk: held.call.echoOk, upstreamMarker: o.sent > 0 ? held.promptMarker : undefined, hangTag: undefined, chain,
        outcome: o.outcome, ...(o.errorCode ? { errorCode: o.errorCode } : {}), upstreamSoFar: { marker: held.promptMarker, n: o.sent },
        neverUpstream: t.list.filter((m) => reply.includes(m)), ...(o.notBeforeMs !== undefined ? { notBeforeMs: o.notBeforeMs } : {}),
      })
    }
    if (plan === 'expired') return step('reply after the TTL', REASONED_REPLY, { expect: [410], outcome: 'rejected', errorCode: 'challenge_expired', sent: 0, notBeforeMs: CHALLENGE_TTL_S * 1000 + 300 })
    if (plan === 'weak reply, then answered') step('weak reply', WEAK_REPLY, { expect: [200], outcome: 'challenge_failed', sent: 0 })
    step('reasoned reply', REASONED_REPLY, { expect: [200], outcome: 'allowed', sent: 1 })
  }

  /** A request with a hand-made body (invalid ones). */
  raw(wire: Wire, what: string, body: (t: Tagger) => string | { chunked: string }, o: { expect: readonly Status[]; contentType?: string; auth?: Auth; records?: boolean; reachesUpstream?: string }): void {
    const t = this.tag(`${wire}, ${what}`)
    const b = body(t)
    this.add({
      label: t.label, method: 'POST', path: `${PATHS[wire]}?canary=${t.m('query string')}`,
      headers: this.headers(t, o.auth ?? this.auth(), o.contentType ?? 'application/json'), body: b,
      mode: 'plain', expect: o.expect, records: o.records ?? true, markers: t.list, echoOk: [],
      upstreamMarker: o.reachesUpstream === undefined ? undefined : t.at.get(o.reachesUpstream), hangTag: undefined,
    })
  }

  /** A JSON body that fails validation. */
  invalid(wire: Wire, what: string, body: (t: Tagger) => unknown, expect: readonly Status[] = [400]): void {
    this.raw(wire, what, (t) => JSON.stringify(body(t)), { expect })
  }
}

/** A key that parses (right shape, valid checksum) but does not exist, its secret part a marker. */
function keyShapedJunk(t: Tagger): string {
  const secret = t.k('key-shaped junk key (secret part)').padEnd(33, 'z')
  assert.equal(secret.length, 33)
  const body = `tg_live_${randomBase62(12)}_${secret}`
  return body + checksum62(body)
}

function buildRound(w: Workload): void {
  WIRES.forEach((wire, i) => {
    const up = (k: number): Upstream => UPSTREAMS[(i + k) % UPSTREAMS.length]!
    // Success, JSON and SSE, to every provider; the upstream's answer carries markers too.
    for (const p of PROVIDERS) {
      w.ai(wire, p, { what: 'success JSON', expect: [200], output: true })
      w.ai(wire, p, { what: 'success SSE', stream: true, expect: [200], output: true })
    }
    w.ai(wire, up(0), { what: 'success JSON, long prompt', long: true, expect: [200], output: true })
    w.ai(wire, up(1), { what: 'success SSE, long prompt', long: true, stream: true, expect: [200], output: true })
    w.ai(wire, 'local', { what: 'success JSON, long prompt', long: true, expect: [200] })
    // Upstream errors: the mock's error body QUOTES the prompt.
    for (const p of UPSTREAMS) w.ai(wire, p, { what: 'upstream 500 quoting the prompt', suffix: '-fail-500', expect: [502] })
    w.ai(wire, up(0), { what: 'SSE, upstream 500 quoting the prompt', suffix: '-fail-500', stream: true, expect: [502] })
    w.ai(wire, up(1), { what: 'upstream 400 quoting the prompt', suffix: '-fail-400', expect: [400] })
    w.ai(wire, up(2), { what: 'upstream 429 quoting the prompt', suffix: '-fail-429', expect: [429] })
    w.ai(wire, up(2), { what: 'upstream answers garbage', suffix: '-garbage', expect: [502] })
    for (const p of UPSTREAMS) w.ai(wire, p, { what: 'SSE, upstream fails mid-stream after output', stream: true, output: true, failMidStream: true, expect: [200] })
    // Timeouts and client aborts.
    w.ai(wire, up(0), { what: 'upstream never answers (gateway timeout)', suffix: '-hang', expect: [504] })
    w.ai(wire, up(1), { what: 'client aborts before the answer', suffix: '-hang', mode: 'abort-before-answer', expect: ['aborted'] })
    w.ai(wire, up(2), { what: 'client aborts mid-stream', suffix: '-slow', stream: true, mode: 'abort-mid-stream', expect: ['aborted'] })
    // Invalid requests, with a valid key (so they are recorded).
    const model = (t: Tagger) => `${MODEL_PREFIX[up(0)]}-${t.m('model name')}`
    w.raw(wire, 'malformed JSON', (t) => `{"model":"${model(t)}","prompt":"${t.m('prompt')}","messages":[{"role":"user","content":"${t.na('prompt')}"}`, { expect: [400] })
    w.raw(wire, 'prototype poisoning', (t) => `{"model":"${model(t)}","__proto__":{"polluted":"${t.m('__proto__ value')}"},"prompt":"${t.m('prompt')}"}`, { expect: [400] })
    w.raw(wire, 'text/plain body', (t) => `${t.m('text/plain body')} ${t.na('text/plain body')}`, { contentType: 'text/plain', expect: [415] })
    w.raw(wire, 'form body', (t) => `model=${model(t)}&prompt=${encodeURIComponent(t.na('form-encoded prompt'))}`, { contentType: 'application/x-www-form-urlencoded', expect: [415] })
    w.raw(wire, 'no content type', (t) => `{"prompt":"${t.m('prompt')}"}`, { contentType: '', expect: [415, 400] })
    const oversize = (t: Tagger) => JSON.stringify({ model: model(t), prompt: longText(t, 'oversize body', BODY_LIMIT + 64 * 1024, 64 * 1024).text, messages: [] })
    w.raw(wire, 'oversize body (content-length)', oversize, { expect: [413, 'network-error'] })
    w.raw(wire, 'oversize body (chunked)', (t) => ({ chunked: oversize(t) }), { expect: [413, 'network-error'] })
    w.ai(wire, 'local', { what: 'unknown model', model: (t) => `mistral-large-${t.m('unknown model name')}`, expect: [404], reachesUpstream: false })
    w.ai(wire, 'local', { what: 'non-ASCII model name', model: (t) => `local-${t.na('invalid model name')}`, expect: [400], reachesUpstream: false })
    w.ai(wire, 'local', { what: 'model name with a space', model: (t) => `local ${t.m('invalid model name')}`, expect: [400], reachesUpstream: false })
    const png = (t: Tagger) => pngWithText(t.m('PNG tEXt chunk')).toString('base64')
    if (wire === 'native') {
      w.invalid(wire, 'unknown field', (t) => ({ model: 'local-echo', prompt: t.m('prompt'), [t.m('unknown field name')]: t.na('unknown field value') }))
      w.invalid(wire, 'max_tokens not a number', (t) => ({ model: 'local-echo', prompt: t.m('prompt'), max_tokens: t.m('max_tokens value') }))
      w.invalid(wire, 'empty prompt', (t) => ({ model: 'local-echo', prompt: '', system: t.m('system prompt') }))
      w.invalid(wire, 'attachment of a refused type', (t) => ({ model: 'local-echo', prompt: t.m('prompt'), attachments: [{ mime_type: `application/x-${t.m('attachment MIME type')}`, filename: t.m('attachment filename'), data: b64(t.m('attachment body')) }] }))
      w.invalid(wire, 'attachment not base64', (t) => ({ model: 'local-echo', prompt: t.m('prompt'), attachments: [{ mime_type: 'text/plain', data: `%%${t.m('attachment body')}%%` }] }))
      w.invalid(wire, 'attachment not UTF-8', (t) => ({ model: 'local-echo', prompt: t.m('prompt'), attachments: [{ mime_type: 'text/csv', filename: t.m('attachment filename'), data: Buffer.concat([Buffer.from(`id\n${t.m('attachment text/csv')}\n`), Buffer.from([0xff, 0xfe, 0xfd])]).toString('base64') }] }))
      w.invalid(wire, 'PNG with wrong magic bytes', (t) => ({ model: 'local-echo', prompt: t.m('prompt'), attachments: [{ mime_type: 'image/png', filename: t.m('attachment filename'), data: b64(`${t.m('fake PNG body')}`) }] }))
      w.invalid(wire, 'attachment filename too long', (t) => ({ model: 'local-echo', prompt: t.m('prompt'), attachments: [{ mime_type: 'text/plain', data: b64(t.m('attachment text/plain')), filename: `${t.m('attachment filename')}-`.repeat(9) }] }))
      w.invalid(wire, 'PDF attachment (a refused type)', (t) => ({ model: 'local-echo', prompt: t.m('prompt'), attachments: [{ mime_type: 'application/pdf', filename: `${t.m('attachment filename')}.pdf`, data: pdfWithText(t.m('PDF text')).toString('base64') }] }))
      w.invalid(wire, 'too many attachments', (t) => ({ model: 'local-echo', prompt: t.m('prompt'), attachments: Array.from({ length: 17 }, () => ({ mime_type: 'text/plain', data: b64(t.m('attachment text/plain')) })) }))
    } else if (wire === 'anthropic') {
      w.invalid(wire, 'max_tokens missing', (t) => ({ model: model(t), messages: [{ role: 'user', content: t.m('prompt') }] }))
      w.invalid(wire, 'bad role', (t) => ({ model: model(t), max_tokens: 16, messages: [{ role: t.m('role value'), content: t.m('prompt') }] }))
      w.invalid(wire, 'image in the system prompt', (t) => ({ model: model(t), max_tokens: 16, system: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: png(t) } }], messages: [{ role: 'user', content: t.m('prompt') }] }))
      w.invalid(wire, 'image of a refused type', (t) => ({ model: model(t), max_tokens: 16, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: `image/${t.m('image media type')}`, data: png(t) } }] }] }))
      // A PDF document block passes through to an Anthropic upstream (same format only).
      w.raw(wire, 'PDF document block to Anthropic', (t) => JSON.stringify({
        model: 'claude-sonnet-4-5', max_tokens: 16, system: t.na('system prompt'),
        messages: [{ role: 'user', content: [{ type: 'text', text: t.m('prompt') }, { type: 'document', title: t.m('document title'), source: { type: 'base64', media_type: 'application/pdf', data: pdfWithText(t.m('PDF text')).toString('base64') } }] }],
      }), { expect: [200], reachesUpstream: 'prompt' })
      w.invalid(wire, 'tools to another provider', (t) => ({ model: `gpt-4o-${t.m('model name')}`, max_tokens: 16, tools: [{ name: t.m('tool name'), description: t.na('tool description'), input_schema: { type: 'object' } }], messages: [{ role: 'user', content: t.m('prompt') }] }))
    } else {
      w.invalid(wire, 'bad role', (t) => ({ model: model(t), messages: [{ role: t.m('role value'), content: t.m('prompt') }] }))
      w.invalid(wire, 'temperature not a number', (t) => ({ model: model(t), temperature: t.m('temperature value'), messages: [{ role: 'user', content: t.m('prompt') }] }))
      w.invalid(wire, 'image data URL that is not an image', (t) => ({ model: model(t), messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${b64(t.m('fake image body'))}` } }] }] }))
      w.invalid(wire, 'several choices to another provider', (t) => ({ model: `gemini-2.5-flash-${t.m('model name')}`, n: 2, messages: [{ role: 'user', content: t.m('prompt') }] }))
      w.invalid(wire, 'messages missing', (t) => ({ model: model(t), prompt: t.m('prompt') }))
    }
    // Decision-core paths (GW-4, GW-6, GW-7) under the default policy: a must-not-miss category is
    // blocked before anything goes upstream; PII is redacted from what goes upstream (the markers are not PII: they do).
    w.ai(wire, up(0), { what: 'blocked by the default policy (S9)', lead: () => BLOCKED_PHRASE, expect: [403], errorCode: 'blocked_by_policy', outcome: 'blocked', reachesUpstream: false, neverUpstream: (m) => m.prompt })
    const email = (t: Tagger) => `Send the summary to ${PII_EMAIL} and to maria.gonzalez.${t.k('e-mail address (PII)')}@acme-corp.com.`
    w.ai(wire, up(1), { what: 'PII redacted by the default policy', lead: email, output: true, expect: [200], outcome: 'redacted', neverUpstream: (m) => [PII_EMAIL, ...m.lead] })
    // The LLM classifier (GW-3): the classify org's policy needs the model, so its requests are
    // escalated — text to the Anthropic-format mock, images to the Gemini-format one, PII redacted first.
    const classify = (): Auth => ({ kind: i % 2 === 0 ? 'x-api-key' : 'bearer', key: w.keys.classify })
    w.ai(wire, up(2), { what: 'escalated to the LLM classifier', auth: classify(), output: true, expect: [200], outcome: 'allowed', classifier: { never: () => [] } })
    w.ai(wire, up(0), { what: 'escalated to the LLM classifier, PII redacted first', auth: classify(), lead: email, single: true, output: true, expect: [200], outcome: 'redacted', neverUpstream: (m) => [PII_EMAIL, ...m.lead], classifier: { never: (m) => [PII_EMAIL, ...m.lead] } })
    // Invalid keys: nothing is recorded (no org to record it under).
    w.ai(wire, up(0), { what: 'marker as x-api-key', auth: { kind: 'x-api-key', key: `sk-${w.M.next(`${wire}: junk x-api-key`)}` }, expect: [401], records: false, reachesUpstream: false })
    w.ai(wire, up(1), { what: 'marker as bearer token', auth: { kind: 'bearer', key: w.M.next(`${wire}: junk bearer token`) }, expect: [401], records: false, reachesUpstream: false })
    const jt = w.tag(`${wire}, key-shaped junk key`)
    w.ai(wire, up(2), { what: 'key-shaped junk key', auth: { kind: 'x-api-key', key: keyShapedJunk(jt) }, expect: [401], records: false, reachesUpstream: false })
    w.ai(wire, up(0), { what: 'valid key plus a different bearer', auth: { kind: 'both', xApiKey: w.keys.production, bearer: w.M.next(`${wire}: conflicting bearer token`) }, expect: [401], records: false, reachesUpstream: false })
    w.ai(wire, up(1), { what: 'no key', auth: { kind: 'none' }, expect: [401], records: false, reachesUpstream: false })
    // Wrong environment: a sandbox key on an instance serving production only.
    w.ai(wire, up(2), { what: 'sandbox key on a production-only instance', auth: { kind: 'x-api-key', key: w.keys.sandbox }, expect: [403], reachesUpstream: false })
  })
  // Challenges (GW-5): held, weak reply, reasoned reply, expired — chains whose replies are built from the answers before them.
  w.challenge('native', 'openai', 'expired')
  w.challenge('native', 'anthropic', 'weak reply, then answered')
  w.challenge('openai', 'gemini', 'answered')
  w.challenge('anthropic', 'openai', 'weak reply, then answered')
  // Idempotency-Key reuse (replay and conflict).
  const idem = w.M.next('native: shared Idempotency-Key')
  w.ai('native', 'openai', { what: 'Idempotency-Key, first', idempotencyKey: idem, expect: [200], output: true })
  // LIMIT-2: a retry is answered from the recorded decision and a reuse for another request is
  // refused — neither reaches the upstream, nor records a new decision.
  w.ai('native', 'openai', { what: 'Idempotency-Key, reused', idempotencyKey: idem, expect: [200, 409, 422], records: false, reachesUpstream: false })
  w.ai('native', 'anthropic', { what: 'Idempotency-Key, reused for another request', idempotencyKey: idem, expect: [409, 422], records: false, reachesUpstream: false })
  // Routes that do not exist, with markers in the URL.
  const t = w.tag('unknown routes')
  w.add({ label: t.label, method: 'POST', path: `/v1/${t.m('URL path segment')}?q=${t.m('query string')}`, headers: w.headers(t, w.auth()), body: JSON.stringify({ prompt: t.m('prompt') }), mode: 'plain', expect: [404], records: false, markers: t.list, echoOk: [], upstreamMarker: undefined, hangTag: undefined })
  w.add({ label: t.label, method: 'GET', path: `/v1/intercept?prompt=${encodeURIComponent(t.na('prompt in a query string'))}`, headers: w.headers(t, w.auth(), undefined), body: undefined, mode: 'plain', expect: [404], records: false, markers: t.list, echoOk: [], upstreamMarker: undefined, hangTag: undefined })
  w.add({ label: t.label, method: 'GET', path: `/v1/models?q=${t.m('query string')}`, headers: w.headers(t, { kind: 'x-api-key', key: t.m('junk x-api-key') }, undefined), body: undefined, mode: 'plain', expect: [401], records: false, markers: t.list, echoOk: [], upstreamMarker: undefined, hangTag: undefined })
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

interface Target {
  readonly base: string
  readonly mock: MockUpstream
  readonly dispatcher: Agent
  /** Every request the upstream received so far (method, URL, body). */
  readonly upstreamSeen: readonly string[]
}

async function runCall(to: Target, call: Call, earlier: readonly Result[]): Promise<Result> {
  const wait = call.notBeforeMs !== undefined && earlier.length > 0 ? earlier[earlier.length - 1]!.at + call.notBeforeMs - Date.now() : 0
  if (wait > 0) await new Promise((r) => setTimeout(r, wait))
  // The call as actually sent (the self-check scans it): parts built from the chain's earlier answers.
  const c: Call = call.build ? { ...call, ...call.build(earlier) } : call
  const done = (r: Omit<Result, 'call' | 'at' | 'upstreamSoFar'>): Result => {
    const m = c.upstreamSoFar?.marker
    return { call: c, ...r, at: Date.now(), ...(m !== undefined ? { upstreamSoFar: to.upstreamSeen.filter((x) => x.includes(m)).length } : {}) }
  }
  const ac = new AbortController()
  const init: RequestInit = { method: c.method, headers: c.headers, signal: ac.signal, dispatcher: to.dispatcher }
  if (typeof c.body === 'string') init.body = c.body
  else if (c.body) {
    const data = Buffer.from(c.body.chunked)
    init.body = (async function* () {
      for (let i = 0; i < data.length; i += 64 * 1024) yield data.subarray(i, i + 64 * 1024)
    })()
    init.duplex = 'half'
  }
  const url = to.base + c.path
  try {
    if (c.mode === 'abort-before-answer') {
      const pending = fetch(url, init).then(() => undefined, () => undefined)
      const tag = c.hangTag!
      // The model name carries the tag: in the body (Anthropic, OpenAI) or the URL path (Gemini).
      await until(() => to.mock.received.some((r) => r.path.includes(tag) || String((r.body as { model?: unknown } | undefined)?.model ?? '').includes(tag)), 10_000, 'the upstream to receive the request')
      ac.abort()
      await pending
      return done({ status: 'aborted', httpStatus: undefined, text: '', headers: '' })
    }
    const res = await fetch(url, init)
    const headers = [...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n')
    if (c.mode === 'abort-mid-stream') {
      const reader = res.body!.getReader()
      const first = await reader.read()
      ac.abort()
      await reader.cancel().catch(() => undefined)
      return done({ status: 'aborted', httpStatus: res.status, text: Buffer.from(first.value ?? new Uint8Array()).toString('utf8'), headers })
    }
    return done({ status: res.status, httpStatus: res.status, text: await res.text(), headers })
  } catch (err) {
    return done({ status: 'network-error', httpStatus: undefined, text: (err as Error).name, headers: '' })
  }
}

async function runAll(to: Target, calls: readonly Call[]): Promise<Result[]> {
  // Calls of one chain are sent in the order written, by one worker, each seeing the answers
  // before it (an Idempotency-Key's first use, retry and reuse; a challenge and its replies).
  const chains = new Map<string, Call[]>()
  for (const c of calls) {
    const key = c.chain ?? `#${c.id}`
    chains.set(key, [...(chains.get(key) ?? []), c])
  }
  // The slow ones first, so they overlap with the rest: chains that must wait (an expiring
  // challenge), then timeouts and aborts.
  const slow = (chain: readonly Call[]) => (chain.some((c) => c.notBeforeMs !== undefined) ? 0 : chain.some((c) => c.mode !== 'plain' || c.label.includes('gateway timeout')) ? 1 : 2)
  const queue = [...chains.values()].sort((a, b) => slow(a) - slow(b))
  const results: Result[] = []
  let next = 0
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < queue.length) {
      const earlier: Result[] = []
      for (const c of queue[next++]!) earlier.push(await runCall(to, c, earlier))
      results.push(...earlier)
    }
  }))
  return results.sort((a, b) => a.call.id - b.call.id)
}

// ---------------------------------------------------------------------------------------------
// Sources

/** Everything the process writes to its own stdout/stderr while the tee is on. */
function teeStdio(): { bytes(): Buffer; restore(): void } {
  const chunks: Buffer[] = []
  const orig = { out: process.stdout.write, err: process.stderr.write }
  const wrap = (stream: NodeJS.WriteStream, original: typeof process.stdout.write) =>
    function (this: unknown, chunk: unknown, ...rest: unknown[]): boolean {
      chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, typeof rest[0] === 'string' ? (rest[0] as BufferEncoding) : 'utf8') : Buffer.from(chunk as Uint8Array))
      return (original as (...a: unknown[]) => boolean).call(stream, chunk, ...rest)
    } as typeof process.stdout.write
  process.stdout.write = wrap(process.stdout, orig.out)
  process.stderr.write = wrap(process.stderr, orig.err)
  let restored = false
  return {
    bytes: () => Buffer.concat(chunks),
    restore() {
      if (restored) return
      restored = true
      process.stdout.write = orig.out
      process.stderr.write = orig.err
    },
  }
}

interface PgSide {
  readonly url: string
  readonly database: string
  readonly statementLogging: boolean
  /** Server log files and their size when the test started. */
  readonly logFiles: Map<string, number>
  readonly dataDirectory: string | undefined
}

/** A fresh database with every statement and parameter logged (maximum exposure, T01), on this database only. */
async function preparePostgres(t: TestContext): Promise<PgSide> {
  const url = await freshPostgres(t)
  const database = new URL(url).pathname.slice(1)
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL })
  await admin.connect()
  try {
    let statementLogging = true
    for (const [k, v] of [['log_statement', 'all'], ['log_min_duration_statement', '0'], ['log_parameter_max_length', '-1'], ['log_parameter_max_length_on_error', '-1'], ['log_min_error_statement', 'error']] as const) {
      try {
        await admin.query(`alter database ${database} set ${k} = '${v}'`)
      } catch {
        statementLogging = false
      }
    }
    let dataDirectory: string | undefined
    const logFiles = new Map<string, number>()
    const candidates: string[] = []
    try {
      const r = await admin.query<{ data: string | null; logfile: string | null }>(`select current_setting('data_directory', true) as data, pg_current_logfile() as logfile`)
      dataDirectory = r.rows[0]?.data ?? undefined
      const f = r.rows[0]?.logfile
      if (f) candidates.push(isAbsolute(f) || !dataDirectory ? f : join(dataDirectory, f))
    } catch {
      // not a superuser: no data directory, no log file name
    }
    // Without logging_collector the server's stderr goes where the packaging put it (Debian: /var/log/postgresql).
    for (const dir of ['/var/log/postgresql', ...(dataDirectory ? [join(dataDirectory, 'log'), join(dataDirectory, 'pg_log')] : [])]) {
      try {
        for (const n of readdirSync(dir)) if (/\.(log|csv|json)$/.test(n)) candidates.push(join(dir, n))
      } catch {
        // not there or not readable
      }
    }
    for (const f of new Set(candidates)) {
      try {
        closeSync(openSync(f, 'r'))
        logFiles.set(f, statSync(f).size)
      } catch {
        // unreadable
      }
    }
    return { url, database, statementLogging, logFiles, dataDirectory }
  } finally {
    await admin.end()
  }
}

function readFrom(path: string, offset: number): Buffer {
  const size = statSync(path).size
  const start = size < offset ? 0 : offset
  const buf = Buffer.alloc(size - start)
  const fd = openSync(path, 'r')
  try {
    readSync(fd, buf, 0, buf.length, start)
  } finally {
    closeSync(fd)
  }
  return buf
}

/** Every key of every Redis database: decoded values (GET/HGETALL/…) and the raw DUMP serialization. */
async function scanRedis(r: Redis, scanner: MarkerScanner, maxKeys = 200_000): Promise<number> {
  const info = await r.info('keyspace')
  const dbs = [...info.matchAll(/^db(\d+):/gm)].map((m) => Number(m[1]))
  let total = 0
  for (const db of dbs) {
    await r.select(db)
    let cursor = '0'
    do {
      const [next, keys] = await r.scanBuffer(cursor, 'COUNT', 500)
      cursor = next.toString()
      if (keys.length === 0) continue
      total += keys.length
      const types = (await keys.reduce((p, k) => p.type(k), r.pipeline()).exec()) ?? []
      const p = r.pipeline()
      keys.forEach((k, i) => {
        const type = String(types[i]?.[1])
        if (type === 'string') p.getBuffer(k)
        else if (type === 'hash') p.hgetallBuffer(k)
        else if (type === 'list') p.lrangeBuffer(k, 0, -1)
        else if (type === 'set') p.smembersBuffer(k)
        else if (type === 'zset') p.zrangeBuffer(k, '0', '-1', 'WITHSCORES')
        else if (type === 'stream') p.xrangeBuffer(k, '-', '+')
        else p.echo('')
        p.dumpBuffer(k)
      })
      const values = (await p.exec()) ?? []
      keys.forEach((k, i) => {
        const name = `db${db}:${k.toString('latin1')}`
        const flat = (v: unknown): Buffer => Buffer.isBuffer(v) ? v
          : Array.isArray(v) ? Buffer.concat(v.map(flat))
          : v !== null && typeof v === 'object' ? Buffer.concat(Object.entries(v).flatMap(([f, x]) => [Buffer.from(f), flat(x)]))
          : Buffer.from(String(v ?? ''))
        scanner.scan('redis: keys and values (SCAN + GET…)', name, Buffer.concat([k, Buffer.from('\n'), flat(values[2 * i]?.[1])]))
        const dump = values[2 * i + 1]?.[1]
        if (Buffer.isBuffer(dump)) scanner.scan('redis: DUMP (serialized)', name, dump)
      })
    } while (cursor !== '0' && total < maxKeys)
    if (total >= maxKeys) scanner.note('redis: keys and values (SCAN + GET…)', `stopped after ${maxKeys} keys`)
  }
  await r.select(0)
  return total
}

/** Forces an RDB snapshot and scans the file (the Redis dir as T01 asks), when the server lets us. */
async function scanRedisRdb(r: Redis, scanner: MarkerScanner): Promise<boolean> {
  const source = 'redis: RDB snapshot (BGSAVE)'
  let path: string
  try {
    const dir = (await r.config('GET', 'dir')) as string[]
    const file = (await r.config('GET', 'dbfilename')) as string[]
    path = join(dir[1]!, file[1]!)
  } catch {
    scanner.note(source, 'unavailable: CONFIG GET refused')
    return false
  }
  const existed = existsSync(path)
  const since = Math.floor(Date.now() / 1000)
  const deadline = Date.now() + 20_000
  for (;;) {
    try {
      await r.bgsave()
      break
    } catch (err) {
      if (!/in progress/i.test((err as Error).message) || Date.now() > deadline) {
        scanner.note(source, 'unavailable: BGSAVE refused')
        return false
      }
      await new Promise((res) => setTimeout(res, 200))
    }
  }
  for (;;) {
    const info = await r.info('persistence')
    const saved = Number(/rdb_last_save_time:(\d+)/.exec(info)?.[1] ?? 0)
    if (/rdb_bgsave_in_progress:0/.test(info) && saved >= since && /rdb_last_bgsave_status:ok/.test(info)) break
    if (Date.now() > deadline) {
      scanner.note(source, 'unavailable: BGSAVE did not finish')
      return false
    }
    await new Promise((res) => setTimeout(res, 100))
  }
  const ok = scanner.scanFile(source, path)
  if (!existed) rmSync(path, { force: true })
  if (!ok) scanner.note(source, `unavailable: ${path} is not readable`)
  return ok
}

function copyIfExists(from: string, toDir: string): void {
  mkdirSync(toDir, { recursive: true })
  for (const suffix of ['', '-wal', '-shm', '-journal']) {
    if (existsSync(from + suffix)) copyFileSync(from + suffix, join(toDir, `tollgate.db${suffix}`))
  }
}

function scanTree(scanner: MarkerScanner, source: string, root: string): void {
  const walk = walkFiles(root)
  scanner.scan(source, `file names under ${root}`, walk.files.map((f) => f.path).join('\n'))
  for (const f of walk.files) scanner.scanFile(source, f.path)
}

// ---------------------------------------------------------------------------------------------
// The canary

interface Control {
  readonly name: string
  readonly marker: string
  /** Every source it must be found in (each one is a separate proof that source is really read). */
  readonly sources: readonly string[]
  /** Found through one of these encodings (proves the decoder, not just the raw search). */
  readonly encodings?: readonly string[]
}

interface CanaryRun {
  readonly M: Markers
  readonly scanner: MarkerScanner
  readonly results: readonly Result[]
  readonly controls: readonly Control[]
  readonly dropped: string
  readonly decisions: { readonly got: number; readonly min: number; readonly max: number }
  readonly notTransited: string[]
  /** Decision-core paths that did not do what they are for (outcome, error code, upstream, classifier). */
  readonly misbehaved: string[]
}

const RESPONSES = 'client: answers (GW-2, not storage)'
/** Not storage: what the test itself sent and what the upstream answered. Every workload marker must be found here. */
const SELF_CHECK = 'self-check: requests as sent + upstream outputs (not storage)'
const NOT_STORAGE = new Set([RESPONSES, SELF_CHECK])

const EXPORT_SOURCE = 'account export (RIGHTS-1)'

const BACKUP_SOURCE = 'backup: decrypted with the backup key (BACKUP-2)'

/**
 * BACKUP-2: a backup taken by the running app after the workload, decrypted with the backup key
 * (PostgreSQL's custom-format dump decoded to SQL by pg_restore) for the scan. It must really be
 * encrypted: the decrypted view names the tables, the file itself does not.
 */
async function canaryBackup(tg: TestApp, work: string): Promise<{ name: string; decrypted: Buffer }> {
  const backups = tg.deps.backups
  assert.ok(backups, 'backups are on (development key)')
  const r = await backups.run({ type: 'operator', id: null })
  const file = join(tg.config.backup.dir, r.name)
  const encrypted = readFileSync(file)
  const plain = join(work, `backup-decrypted-${r.name}`)
  const header = await decryptFile(file, plain, [backups.settings.key])
  const decrypted = header.dialect === 'postgres'
    ? (await execFileP('pg_restore', ['--file=-', plain], { encoding: 'buffer', maxBuffer: 1024 * 1024 * 1024 })).stdout
    : readFileSync(plain)
  const body = encrypted.subarray(decodeHeader(encrypted).length)
  for (const table of ['audit_event', 'api_key', 'decision', 'org_key']) {
    assert.ok(decrypted.includes(table), `INVALID: the decrypted backup should name the table ${table}`)
    assert.ok(!body.includes(table), `the backup file holds the plaintext table name ${table}: it is not encrypted`)
  }
  return { name: r.name, decrypted }
}

async function runCanary(t: TestContext, backend: 'sqlite' | 'postgres'): Promise<CanaryRun | undefined> {
  const started = Date.now()
  const since = started - 2000
  let pgSide: PgSide | undefined
  if (backend === 'postgres') {
    if (!(await needService(t, 'postgres'))) return undefined
    if (!(await needService(t, 'redis'))) return undefined
    pgSide = await preparePostgres(t)
  }
  const M = new Markers()
  const timings: string[] = []
  let lastTick = Date.now()
  const tick = (what: string) => {
    const now = Date.now()
    timings.push(`${what} ${now - lastTick} ms`)
    lastTick = now
  }
  const work = mkdtempSync(join(tmpdir(), `tollgate-canary-${M.run}-`))
  t.after(() => rmSync(work, { recursive: true, force: true }))

  // Capture starts before the app exists: every thread it creates is traced, every line logged.
  const log = captureLog('debug')
  const stdio = teeStdio()
  t.after(() => stdio.restore())
  const trace = await traceFileWrites(process.pid, join(work, 'strace.txt'))
  if (typeof trace !== 'string') t.after(() => trace.stop())

  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const out: OutputUpstream = await startOutputUpstream(mock.url)
  t.after(() => out.close())
  const env = {
    ANTHROPIC_API_KEY: UPSTREAM_KEYS.anthropic, ANTHROPIC_BASE_URL: out.url,
    OPENAI_API_KEY: UPSTREAM_KEYS.openai, OPENAI_BASE_URL: `${out.url}/v1`,
    GEMINI_API_KEY: UPSTREAM_KEYS.gemini, GEMINI_BASE_URL: out.url,
    TOLLGATE_ENVIRONMENTS: 'production',
    TOLLGATE_BODY_LIMIT_BYTES: String(BODY_LIMIT),
    TOLLGATE_UPSTREAM_TIMEOUT_MS: String(UPSTREAM_TIMEOUT_MS),
    TOLLGATE_CHALLENGE_TTL_S: String(CHALLENGE_TTL_S),
  }
  // The LLM classifier (GW-3), against a local mock speaking Anthropic's and Gemini's wire formats.
  // startApp injects a classifier (the process-wide embedded one) instead of letting deps build one
  // from TOLLGATE_CLASSIFIER_LLM, so it is built here as deps would (mode always): the LLM
  // classifier over the embedded one, through the gateway's HTTP client type, fallbacks logged as
  // codes. It escalates only requests whose policy needs the model (the classify org's).
  const classifierMock = await startClassifierMock()
  t.after(() => classifierMock.close())
  const classifierHttp = new UpstreamHttp({ connections: 8, headersTimeoutMs: 10_000, bodyTimeoutMs: 10_000 })
  t.after(() => classifierHttp.close())
  const embedded = sharedClassifier()
  const fallbacks: string[] = []
  const classifier = new LlmClassifier({
    embedded: { name: embedded.name, classify: (i, o) => embedded.classify(i, o), ready: () => embedded.ready?.() ?? Promise.resolve(), close: async () => {} },
    http: classifierHttp,
    mode: 'always',
    anthropic: { baseUrl: classifierMock.url, apiKey: new Secret(CLASSIFIER_KEYS.anthropic), model: 'claude-haiku-4-5' },
    gemini: { baseUrl: classifierMock.url, apiKey: new Secret(CLASSIFIER_KEYS.gemini), model: 'gemini-2.5-flash-lite' },
    timeoutMs: 5000,
    onFallback: (e) => {
      fallbacks.push(`${e.provider}: ${e.code}`)
      log.logger.warn({ event: 'classifier_fallback', provider: e.provider, code: e.code }, 'LLM classifier unavailable: the embedded result stands')
    },
  })
  const tg: TestApp | undefined = await startApp(t, { env, log: log.logger, classifier, ...(pgSide ? { postgres: true, redis: true, databaseUrl: pgSide.url } : {}) })
  assert.ok(tg, 'app started')
  const keys = await orgWithKeys(tg.deps)
  // A second org whose policy challenges every request (GW-5), and a third whose policy needs the
  // embedding model (a shadow rule on domains), so its requests escalate to the LLM classifier.
  const challengeOrg = await orgWithKeys(tg.deps)
  await promotePolicy(tg.deps, challengeOrg.org.id, { version: 1, default_action: 'challenge', rules: [] })
  const classifyOrg = await orgWithKeys(tg.deps)
  await promotePolicy(tg.deps, classifyOrg.org.id, { ...DEFAULT_POLICY, rules: [...DEFAULT_POLICY.rules, { id: 'watch-legal', when: { domains: ['legal'] }, action: 'allow', reason: 'watch', on_error: 'skip', shadow: true }] })
  // T03: the API keys issued in this run are searched like markers; only their hashes may be stored.
  M.secret(keys.production, 'issued production API key')
  M.secret(keys.sandbox, 'issued sandbox API key')
  M.secret(challengeOrg.production, 'issued production API key (challenge org)')
  M.secret(classifyOrg.production, 'issued production API key (classify org)')
  // RIGHTS-1: a person holds the production key, so the workload's decision records are theirs;
  // their account export is scanned below like stored data. Their email carries a decoy (the
  // export's positive control: the scan finds it there).
  const dExport = M.decoy('account email, in the account export')
  const holder = await tg.deps.users.create(tg.deps.db.db, `${dExport}@example.com`)
  await tg.deps.members.add(tg.deps.db.db, keys.org.id, holder.id, 'MEMBER')
  await tg.deps.db.db.updateTable('api_key').set({ user_id: holder.id }).where('id', '=', keys.productionId).execute()

  // The workload.
  const w = new Workload(M, { production: keys.production, sandbox: keys.sandbox, challenge: challengeOrg.production, classify: classifyOrg.production }, out.outputs)
  for (let r = 0; r < ROUNDS; r++) buildRound(w)
  tick('setup')
  const t1 = Date.now()
  // The test's own HTTP client, closed after the workload: a connection it leaves half-used
  // (a request body the server stopped reading) would otherwise hold the app's close() open.
  const client = new Agent({ connections: CONCURRENCY * 2 })
  t.after(() => client.destroy())
  const results = await runAll({ base: tg.url, mock, dispatcher: client, upstreamSeen: out.seen }, w.calls)
  const workloadMs = Date.now() - t1
  tick('workload')

  // Aborted and timed-out requests settle after the client is gone: wait for their records.
  const min = w.calls.filter((c) => c.records === true).length
  const max = min + w.calls.filter((c) => c.records === 'maybe').length
  const count = async () => Number((await tg.deps.db.db.selectFrom('decision').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n)
  let got = -1
  const settleEnd = Date.now() + 15_000
  for (;;) {
    await tg.deps.decisions.drain()
    got = await count()
    if ((got >= min && got <= max) || Date.now() > settleEnd) break
    await new Promise((r) => setTimeout(r, 50))
  }
  await tg.deps.decisions.drain()
  await client.destroy()
  // The outcome each call's decision record carries, by the request id its answer named.
  const requestIdOf = (r: Result) => /^x-request-id: (.*)$/m.exec(r.headers)?.[1]
  const ids = results.filter((r) => r.call.outcome !== undefined).map(requestIdOf).filter((x): x is string => x !== undefined)
  const outcomes = new Map((ids.length ? await tg.deps.db.db.selectFrom('decision').select(['request_id', 'outcome']).where('request_id', 'in', ids).execute() : []).map((x) => [x.request_id, x.outcome]))
  tick('settle')

  // Transit sanity: the content really went through the gateway to the upstream.
  const upstreamText = out.seen.join('\n')
  const notTransited = results.filter((r) => r.call.upstreamMarker && !upstreamText.includes(r.call.upstreamMarker)).map((r) => r.call.label)
  // …and each decision-core path did what it is for: its record's outcome, its error code, what
  // reached the upstream (and when), what reached the LLM classifier.
  const classifierText = classifierMock.received.map((x) => x.raw).join('\n')
  const misbehaved: string[] = []
  for (const r of results) {
    const c = r.call
    if (c.outcome !== undefined) {
      const got = outcomes.get(requestIdOf(r) ?? '')
      if (got !== c.outcome) misbehaved.push(`${c.label}: decision outcome ${got ?? '(no record)'}, expected ${c.outcome}`)
    }
    // The native and OpenAI formats name the code; Anthropic's gives its fixed message.
    if (c.errorCode !== undefined && !r.text.includes(`"${c.errorCode}"`) && !r.text.includes(JSON.stringify(ERRORS[c.errorCode].message).slice(1, -1))) misbehaved.push(`${c.label}: the answer does not carry ${c.errorCode}`)
    if (c.upstreamSoFar && r.upstreamSoFar !== c.upstreamSoFar.n) misbehaved.push(`${c.label}: ${r.upstreamSoFar} upstream requests carried its held prompt when it was answered, expected ${c.upstreamSoFar.n}`)
    for (const x of c.neverUpstream ?? []) if (upstreamText.includes(x)) misbehaved.push(`${c.label}: reached the upstream: ${M.info(x)?.label ?? x}`)
    if (c.classifier) {
      if (!c.classifier.reaches.some((x) => classifierText.includes(x))) misbehaved.push(`${c.label}: never reached the LLM classifier`)
      for (const x of c.classifier.never) if (classifierText.includes(x)) misbehaved.push(`${c.label}: reached the LLM classifier: ${M.info(x)?.label ?? x}`)
    }
  }
  const classifierCalls = { anthropic: classifierMock.received.filter((x) => x.provider === 'anthropic').length, gemini: classifierMock.received.filter((x) => x.provider === 'gemini').length }
  if (classifierCalls.anthropic === 0) misbehaved.push('no request escalated to the LLM classifier (text)')
  if (classifierCalls.gemini === 0) misbehaved.push('no image went to the LLM classifier (Gemini)')
  misbehaved.push(...fallbacks.map((f) => `LLM classifier fell back: ${f}`))

  // RIGHTS-1: the key holder's export (every decision record of the workload's production key).
  const holderSession = await tg.deps.sessions.create(holder.id, 'bootstrap', null)
  const exported = await fetch(`${tg.url}/api/account/export`, { headers: { cookie: `__Host-tollgate=${holderSession.token}` } })
  const exportText = await exported.text()
  if (exported.status !== 200) misbehaved.push(`account export answered ${exported.status}`)
  else if ((JSON.parse(exportText) as { decisions: unknown[] }).decisions.length < 10) misbehaved.push('the account export holds (almost) none of the workload\'s decision records')

  // RIGHTS-3, GW-8: text a person explicitly chooses to store — an artifact saved to the workspace
  // and a report of a harmful output, both carrying workload markers — is sealed under the org's
  // data key, so its markers must be in no byte written either (database, WAL, backup, logs,
  // files). Saved by another member than the key holder: the holder's export (scanned as storage)
  // does not hold them. Control: the saved artifact reads back with its marker (it was stored).
  const chosen = w.tag('stored by choice (RIGHTS-3, GW-8)')
  const artifactMarker = chosen.m('workspace artifact content')
  const storedBodies = {
    artifact: JSON.stringify({ content: `Saved answer ${artifactMarker} ${chosen.na('workspace artifact content')}`, title: chosen.m('workspace artifact title'), temporary: true }),
    report: JSON.stringify({ text: `Harmful output ${chosen.m('report text')} ${chosen.na('report text')}`, category: 'S1' }),
  }
  const saver = await tg.deps.users.create(tg.deps.db.db, `saver-${M.run}@example.com`)
  await tg.deps.members.add(tg.deps.db.db, keys.org.id, saver.id, 'MEMBER')
  await tg.deps.orgSettings.update({ orgId: keys.org.id, workspace: true, actor: { type: 'operator', id: null } })
  const saverAuth = { cookie: `__Host-tollgate=${(await tg.deps.sessions.create(saver.id, 'bootstrap', null)).token}`, origin: tg.deps.origin }
  const csrf = ((await (await fetch(`${tg.url}/api/me`, { headers: saverAuth })).json()) as { csrf_token: string }).csrf_token
  const saverCall = (method: string, path: string, body?: string) =>
    fetch(`${tg.url}/api/orgs/${keys.org.id}${path}`, { method, headers: { ...saverAuth, 'x-csrf-token': csrf, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body } : {}) })
  const savedArtifact = await saverCall('POST', '/artifacts', storedBodies.artifact)
  const savedId = savedArtifact.status === 201 ? ((await savedArtifact.json()) as { id: string }).id : undefined
  if (!savedId) misbehaved.push(`saving a workspace artifact answered ${savedArtifact.status}`)
  else if (!(await (await saverCall('GET', `/artifacts/${savedId}`)).text()).includes(artifactMarker)) misbehaved.push('the saved artifact does not read back with its marker: nothing was stored')
  const savedReport = await saverCall('POST', '/reports', storedBodies.report)
  await savedReport.text()
  if (savedReport.status !== 201) misbehaved.push(`reporting an output answered ${savedReport.status}`)
  const storedRows = await Promise.all((['artifact', 'harm_report'] as const).map((tb) => tg.deps.db.db.selectFrom(tb).select('id').where('org_id', '=', keys.org.id).execute()))
  if (storedRows.some((rows) => rows.length !== 1)) misbehaved.push('the artifact and the report are not one stored row each')

  // Control: a temp file created and deleted while the process is traced.
  const controls: Control[] = []
  controls.push({ name: 'account email in the account export (RIGHTS-1)', marker: dExport, sources: [EXPORT_SOURCE] })
  const ephemeral = join(tmpdir(), `tollgate-canary-ephemeral-${M.run}.txt`)
  if (typeof trace !== 'string') {
    const d = M.decoy('temp file created and deleted during the run')
    writeFileSync(ephemeral, `ephemeral ${d}\n`)
    unlinkSync(ephemeral)
    await trace.stop()
    tick('strace detach')
    controls.push({ name: 'temp file created then deleted during the run (seen by strace)', marker: d, sources: ['strace: writes to files by this process'] })
  }
  const dStdout = M.decoy('stdout line')
  process.stdout.write(`# canary positive control on stdout: ${dStdout}\n`)
  stdio.restore()
  controls.push({ name: 'a line on stdout', marker: dStdout, sources: ['process stdout/stderr'] })

  // Controls: log lines through the real allowlisted logger.
  const dLog = M.decoy('log line, allowlisted field')
  log.logger.warn({ reason: dLog }, 'canary positive control')
  const dropped = M.decoy('log line, NON-allowlisted field')
  log.logger.warn({ prompt: dropped } as unknown as LogFields, 'canary positive control')
  const dLogB64 = M.decoy('log line, base64')
  log.logger.info({ reason: Buffer.from(dLogB64).toString('base64') }, 'canary positive control')
  controls.push({ name: 'log line, allowlisted field', marker: dLog, sources: ['log (raw lines)', 'log (decoded JSON strings)'] })
  controls.push({ name: 'log line, base64-encoded value', marker: dLogB64, sources: ['log (raw lines)'], encodings: ['base64@0', 'base64url@0'] })
  const keyBody = `tg_live_${randomBase62(12)}_${randomBase62(24)}`
  const dKey = M.secret(keyBody + checksum62(keyBody), 'decoy API key in a log line', true)
  log.logger.warn({ reason: `presented ${dKey}` }, 'canary positive control')
  controls.push({ name: 'API key in a log line (T03)', marker: dKey, sources: ['log (raw lines)', 'log (decoded JSON strings)'] })

  // Controls: a temp file that stays, holding one decoy per encoding, and a gzip file.
  const tmpControl = join(tmpdir(), `tollgate-canary-control-${M.run}.bin`)
  const gzControl = join(tmpdir(), `tollgate-canary-control-${M.run}.log.gz`)
  t.after(() => {
    rmSync(tmpControl, { force: true })
    rmSync(gzControl, { force: true })
  })
  const dTmp = M.decoy('temp file')
  const encoded: { name: string; marker: string; bytes: Buffer; encodings: string[] }[] = []
  const enc = (name: string, nonAscii: boolean, f: (d: string) => string | Buffer, encodings: string[]) => {
    const d = M.decoy(`temp file, ${name}`, nonAscii)
    encoded.push({ name, marker: d, bytes: Buffer.from(f(d)), encodings })
  }
  enc('JSON \\u-escaped', true, (d) => `{"v":"${jsonEscapeAscii(d)}"}`, ['json-u'])
  enc('JSON \\U-escaped (upper hex)', true, (d) => `"${jsonEscapeAscii(d, true)}"`, ['json-U'])
  enc('URL-encoded', true, (d) => `https://x.test/?q=${encodeURIComponent(d)}`, ['url'])
  enc('UTF-16LE', true, (d) => Buffer.from(d, 'utf16le'), ['utf16le'])
  enc('hex', false, (d) => Buffer.from(d).toString('hex'), ['hex'])
  enc('base64, alignment 1', false, (d) => Buffer.from(`x${d}`).toString('base64'), ['base64@1', 'base64url@1'])
  enc('base64, alignment 2', false, (d) => Buffer.from(`xy${d}`).toString('base64'), ['base64@2', 'base64url@2'])
  enc('base64url', false, (d) => Buffer.from(`\xff\xfe${d}`, 'latin1').toString('base64url'), ['base64url@2', 'base64@2'])
  writeFileSync(tmpControl, Buffer.concat([Buffer.from(`control ${dTmp}\n`), ...encoded.flatMap((e) => [e.bytes, Buffer.from('\n')])]))
  const dGz = M.decoy('gzip file')
  writeFileSync(gzControl, gzipSync(Buffer.from(`rotated log line ${dGz}\n`)))
  controls.push({ name: 'temp file that stays', marker: dTmp, sources: ['temp dirs: files modified during the run'] })
  for (const e of encoded) controls.push({ name: `temp file, ${e.name}`, marker: e.marker, sources: ['temp dirs: files modified during the run'], encodings: e.encodings })
  controls.push({ name: 'gzip file (decompressed view)', marker: dGz, sources: ['temp dirs: files modified during the run'] })

  const scannerSources: (() => Promise<void> | void)[] = []
  let scanner!: MarkerScanner
  const dbPath = join(tg.dataDir, 'tollgate.db')

  if (backend === 'sqlite') {
    // Control: a row in a throwaway table of the app's own database file (lands in the WAL first).
    const dRow = M.decoy('SQLite row')
    const side = new SqliteDatabase(dbPath)
    side.exec('create table canary_decoy (id integer primary key, note text not null)')
    side.prepare('insert into canary_decoy (note) values (?)').run(`decoy ${dRow}`)
    side.close()
    // BACKUP-2: a backup of the live database after the workload; the decoy row must show up in it.
    const backup = await canaryBackup(tg, work)
    controls.push({ name: 'SQLite row in a decrypted backup', marker: dRow, sources: [BACKUP_SOURCE] })
    scannerSources.push(() => scanner.scan(BACKUP_SOURCE, backup.name, backup.decrypted))
    copyIfExists(dbPath, join(work, 'sqlite-before-close'))
    await tg.close()
    // After the app closed: checkpoint everything into the main file, copy again, read every row.
    const after = new SqliteDatabase(dbPath)
    after.pragma('wal_checkpoint(TRUNCATE)')
    copyIfExists(dbPath, join(work, 'sqlite-after-checkpoint'))
    const parts: Buffer[] = []
    const tables = after.prepare(`select type, name, sql from sqlite_master`).all() as { type: string; name: string; sql: string | null }[]
    for (const tb of tables) {
      parts.push(Buffer.from(`${tb.type} ${tb.name} ${tb.sql ?? ''}\n`))
      if (tb.type !== 'table') continue
      for (const row of after.prepare(`select * from "${tb.name.replaceAll('"', '""')}"`).raw().iterate() as Iterable<unknown[]>) {
        for (const v of row) parts.push(Buffer.isBuffer(v) ? v : Buffer.from(String(v)), Buffer.from('\t'))
        parts.push(Buffer.from('\n'))
      }
    }
    after.close()
    let cliDump: Buffer | undefined
    try {
      cliDump = (await execFileP('sqlite3', [join(work, 'sqlite-after-checkpoint', 'tollgate.db'), '.dump'], { encoding: 'buffer', maxBuffer: 512 * 1024 * 1024 })).stdout
    } catch {
      // no sqlite3 CLI: the row dump above is the decoded view
    }
    controls.push({ name: 'SQLite row', marker: dRow, sources: ['sqlite: every row of every table', 'sqlite: copies before close (db, -wal, -shm)', 'sqlite: copies after wal_checkpoint(TRUNCATE)', 'data dir: every file', ...(cliDump ? ['sqlite: sqlite3 .dump'] : [])] })
    scannerSources.push(() => {
      scanner.scan('sqlite: every row of every table', 'rows', Buffer.concat(parts))
      if (cliDump) scanner.scan('sqlite: sqlite3 .dump', '.dump', cliDump)
      else scanner.note('sqlite: every row of every table', 'sqlite3 CLI not found: .dump view skipped')
      scanTree(scanner, 'sqlite: copies before close (db, -wal, -shm)', join(work, 'sqlite-before-close'))
      scanTree(scanner, 'sqlite: copies after wal_checkpoint(TRUNCATE)', join(work, 'sqlite-after-checkpoint'))
    })
  } else {
    const side = pgSide!
    // Control: a 100 KB value stored out of line (TOAST), marker at three offsets.
    const dPg = M.decoy('PostgreSQL TOASTed 100 KB value')
    const c = new pg.Client({ connectionString: side.url })
    await c.connect()
    const filler = randomBytes(50 * 1024).toString('hex')
    const value = `${dPg} ${filler.slice(0, 40_000)} ${dPg} ${filler.slice(40_000, 80_000)} ${dPg} ${filler.slice(80_000)}`
    await c.query('create table canary_decoy (id int primary key, note text not null)')
    await c.query('alter table canary_decoy alter column note set storage external')
    await c.query('insert into canary_decoy values (1, $1)', [value])
    const toast = await c.query<{ toast: string }>(`select c.reltoastrelid::regclass::text as toast from pg_class c where c.relname = 'canary_decoy'`)
    const chunks = await c.query<{ n: number }>(`select count(*)::int as n from ${toast.rows[0]!.toast}`)
    assert.ok(chunks.rows[0]!.n > 10, `INVALID: the PostgreSQL control value was not TOASTed (${chunks.rows[0]!.n} chunks)`)
    const oid = (await c.query<{ oid: number }>('select oid::int as oid from pg_database where datname = current_database()')).rows[0]!.oid
    await c.end()
    // Control: a Redis value (random bytes around it, so RDB compression leaves it raw). It is
    // written just before the scan: the Redis server is shared with other test files.
    const dRedis = M.decoy('Redis value')
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
    redis.on('error', () => {})
    const decoyKey = `tollgate-canary:${M.run}:decoy`
    t.after(async () => {
      await redis.del(decoyKey).catch(() => undefined)
      redis.disconnect()
    })
    // BACKUP-2: a backup of the live database after the workload; the TOASTed decoy must show up in it.
    const backup = await canaryBackup(tg, work)
    controls.push({ name: 'PostgreSQL value in a decrypted backup', marker: dPg, sources: [BACKUP_SOURCE] })
    scannerSources.push(() => scanner.scan(BACKUP_SOURCE, backup.name, backup.decrypted))
    tick('plant postgres control')
    await tg.close()
    tick('close the app')

    // Flush shared buffers so the raw data files hold what the WAL holds.
    const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL })
    await admin.connect()
    const checkpointed = await admin.query('checkpoint').then(() => true, () => false)
    await admin.end()
    tick('CHECKPOINT')
    const dump = (await execFileP('pg_dump', ['--no-owner', '--no-privileges', `--dbname=${side.url}`], { encoding: 'buffer', maxBuffer: 1024 * 1024 * 1024 })).stdout
    tick('pg_dump')
    const rows: Buffer[] = []
    const r = new pg.Client({ connectionString: side.url })
    await r.connect()
    const tables = await r.query<{ s: string; n: string }>(`select schemaname as s, tablename as n from pg_tables where schemaname not in ('pg_catalog', 'information_schema')`)
    for (const tb of tables.rows) {
      const q = await r.query<{ row: string }>(`select t::text as row from "${tb.s}"."${tb.n}" t`)
      rows.push(Buffer.from(`${tb.s}.${tb.n}\n${q.rows.map((x) => x.row).join('\n')}\n`))
    }
    await r.end()

    const pgSources = ['postgres: pg_dump', 'postgres: every row of every table (row::text)']
    const rawSource = 'postgres: data files of the database + WAL written during the run'
    const dataReadable = side.dataDirectory !== undefined && (() => {
      try {
        readdirSync(join(side.dataDirectory, 'base', String(oid)))
        return true
      } catch {
        return false
      }
    })()
    if (dataReadable && checkpointed) pgSources.push(rawSource)
    const logSource = 'postgres: server log written during the run'
    if (side.statementLogging && side.logFiles.size > 0) pgSources.push(logSource)
    controls.push({ name: 'PostgreSQL TOASTed 100 KB value', marker: dPg, sources: pgSources })

    const rdbSource = 'redis: RDB snapshot (BGSAVE)'
    scannerSources.push(async () => {
      tick('(before pg scan)')
      scanner.scan('postgres: pg_dump', side.database, dump)
      scanner.scan('postgres: every row of every table (row::text)', side.database, Buffer.concat(rows))
      if (dataReadable) {
        scanTree(scanner, rawSource, join(side.dataDirectory!, 'base', String(oid)))
        const walDir = join(side.dataDirectory!, 'pg_wal')
        const segments = walkFiles(walDir, { sinceMs: since, maxDepth: 0 }).files.filter((f) => /^[0-9A-F]{24}$/.test(f.path.slice(walDir.length + 1)))
          .sort((a, b) => statSync(b.path).mtimeMs - statSync(a.path).mtimeMs)
        let budget = WAL_BUDGET
        for (const s of segments) {
          if (budget <= 0) {
            scanner.note(rawSource, `WAL budget reached: ${s.path} and older skipped`)
            break
          }
          scanner.scanFile(rawSource, s.path)
          budget -= s.size
        }
        if (!checkpointed) scanner.note(rawSource, 'CHECKPOINT refused: data files may lag the WAL')
      } else scanner.note(rawSource, 'unavailable: the server data directory is not readable by this user')
      if (side.logFiles.size > 0) for (const [f, offset] of side.logFiles) scanner.scan(logSource, f, readFrom(f, offset))
      else scanner.note(logSource, 'unavailable: no readable server log file found')
      if (!side.statementLogging) scanner.note(logSource, 'statement logging could not be enabled on the test database')
      tick('scan postgres files and log')
      await redis.set(decoyKey, Buffer.concat([randomBytes(48), Buffer.from(` ${dRedis} `), randomBytes(48)]), 'PX', 600_000)
      const keysScanned = await scanRedis(redis, scanner)
      tick('scan redis keys')
      scanner.note('redis: keys and values (SCAN + GET…)', `${keysScanned} keys in all databases`)
      if (await scanRedisRdb(redis, scanner)) controls.push({ name: 'Redis value in an RDB snapshot', marker: dRedis, sources: [rdbSource] })
      tick('redis BGSAVE + scan')
    })
    controls.push({ name: 'Redis value', marker: dRedis, sources: ['redis: keys and values (SCAN + GET…)', 'redis: DUMP (serialized)'] })
  }

  tick('controls and backend views')
  // Scan. The scanner holds every marker: workload, and decoys.
  scanner = new MarkerScanner([...M.all.values()])
  const tScan = Date.now()
  for (const s of scannerSources) await s()
  scanTree(scanner, 'data dir: every file', tg.dataDir)
  tick('scan backend sources')

  // Temp dirs: every regular file modified since the run started (smallest first, within a budget).
  const tmpSource = 'temp dirs: files modified during the run'
  const roots = [...new Set([tmpdir(), '/var/tmp', '/dev/shm'])].filter((d) => existsSync(d))
  const walks = roots.map((root) => walkFiles(root, { sinceMs: since, exclude: [work, tg.dataDir] }))
  const files = walks.flatMap((wk) => wk.files).sort((a, b) => a.size - b.size)
  const unreadable = walks.flatMap((wk) => wk.unreadable)
  if (unreadable.length > 0) scanner.note(tmpSource, `${unreadable.length} directories not readable by this user`)
  if (walks.some((wk) => wk.truncated)) scanner.note(tmpSource, 'file count limit reached: walk truncated')
  scanner.scan(tmpSource, 'file names', files.map((f) => f.path).join('\n'))
  let budget = TMP_BUDGET
  let skipped = 0
  for (const f of files) {
    if (budget - f.size < 0) {
      skipped++
      continue
    }
    if (scanner.scanFile(tmpSource, f.path)) budget -= f.size
  }
  if (skipped > 0) scanner.note(tmpSource, `${skipped} larger files skipped: budget of ${TMP_BUDGET} bytes reached`)
  scanner.note(tmpSource, `roots: ${roots.join(', ')}`)
  tick('scan temp dirs')

  // Logs: the raw lines, and the string values they carry once JSON-decoded.
  scanner.scan('log (raw lines)', 'captured log', log.text())
  const decoded: string[] = []
  const strings = (v: unknown): void => {
    if (typeof v === 'string') decoded.push(v)
    else if (Array.isArray(v)) v.forEach(strings)
    else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) {
      decoded.push(k)
      strings(x)
    }
  }
  for (const line of log.lines) {
    try {
      strings(JSON.parse(line))
    } catch {
      decoded.push(line)
    }
  }
  scanner.scan('log (decoded JSON strings)', 'captured log', decoded.join('\n'))
  scanner.scan('process stdout/stderr', 'tee', stdio.bytes())

  // strace: the bytes of every write(2) this process made to a file, concatenated per path.
  const straceSource = 'strace: writes to files by this process'
  if (typeof trace !== 'string') {
    const writes = straceFileWrites(readFileSync(join(work, 'strace.txt'), 'latin1'))
    const byPath = new Map<string, Buffer[]>()
    for (const wr of writes) byPath.set(wr.path, [...(byPath.get(wr.path) ?? []), wr.data])
    scanner.scan(straceSource, 'paths written', [...byPath.keys()].join('\n'))
    for (const [p, data] of byPath) scanner.scan(straceSource, p, Buffer.concat(data))
    const top = [...byPath].map(([p, d]) => [p, d.reduce((n, b) => n + b.length, 0)] as const).sort((a, b) => b[1] - a[1]).slice(0, 8)
    scanner.note(straceSource, `${writes.length} writes to ${byPath.size} files (each write seen up to 64 KiB); largest: ${top.map(([p, n]) => `${p} (${n} B)`).join(', ')}`)
  } else scanner.note(straceSource, `unavailable: ${trace}`)

  // A download of everything stored about a person (RIGHTS-1): a place data goes, scanned like storage.
  scanner.scan(EXPORT_SOURCE, 'GET /api/account/export', exportText)
  // What the clients got back (for GW-2; not a storage source).
  for (const r of results) scanner.scan(RESPONSES, `call#${r.call.id}`, `${r.headers}\n\n${r.text}`)
  // Self-check: the same scanner must find every workload marker in what was sent, in whatever
  // encoding it travelled (base64 attachments, URL-encoded query strings, JSON strings).
  for (const { call: c } of results) {
    const body = typeof c.body === 'string' ? c.body : c.body?.chunked ?? ''
    scanner.scan(SELF_CHECK, `call#${c.id}`, `${c.method} ${c.path}\n${Object.entries(c.headers).map(([k, v]) => `${k}: ${v}`).join('\n')}\n\n${body}`)
  }
  scanner.scan(SELF_CHECK, 'upstream outputs', JSON.stringify([...out.outputs.values()]))
  scanner.scan(SELF_CHECK, 'artifact and report as sent (RIGHTS-3, GW-8)', `${storedBodies.artifact}\n${storedBodies.report}`)

  const scanMs = Date.now() - tScan
  tick('scan logs, stdout, strace, answers')
  t.diagnostic(`${backend}: timings: ${timings.join('; ')}`)
  t.diagnostic(`${backend}: run ${M.run}; ${w.calls.length} requests in ${workloadMs} ms; ${M.all.size} markers (${M.workload().length} workload) × up to ${14} encodings → ${scanner.anchorCount} anchors; scan ${scanMs} ms; total ${Date.now() - started} ms`)
  t.diagnostic(`${backend}: marker locations: ${[...w.kinds].map(([k, n]) => `${k} ×${n}`).join('; ')}`)
  const byOutcome = new Map<string, number>()
  for (const o of outcomes.values()) byOutcome.set(o, (byOutcome.get(o) ?? 0) + 1)
  t.diagnostic(`${backend}: decision-core paths: ${results.filter((r) => r.call.outcome !== undefined).length} calls checked by outcome (${[...byOutcome].map(([k, n]) => `${k} ×${n}`).join(', ')}); LLM classifier calls: ${classifierCalls.anthropic} text (Anthropic format), ${classifierCalls.gemini} image (Gemini format)`)
  let total = 0
  for (const s of scanner.reports()) {
    if (!NOT_STORAGE.has(s.source)) total += s.bytes
    t.diagnostic(`${backend}: scanned ${s.source}: ${s.bytes} bytes in ${s.items} items${s.notes.length ? ` — ${s.notes.join('; ')}` : ''}`)
  }
  t.diagnostic(`${backend}: ${total} bytes scanned in all storage sources`)
  return { M, scanner, results, controls, dropped, decisions: { got, min, max }, notTransited, misbehaved }
}

function describe(M: Markers, h: Hit): string {
  return `${h.source} @ ${h.location}+${h.offset} [${h.encoding}]: ${M.info(h.marker)?.label ?? h.marker}`
}

async function verdicts(t: TestContext, backend: string, run: CanaryRun): Promise<void> {
  const { M, scanner, results } = run

  await t.test(`TRANSIT-1 (${backend}): every path behaved as intended (else the canary did not exercise it)`, () => {
    const wrong = results.filter((r) => !r.call.expect.includes(r.status)).map((r) => `${r.call.label}: got ${r.status}, expected ${r.call.expect.join(' or ')}`)
    assert.deepEqual(wrong, [], 'paths that did not behave as the workload intended')
    assert.deepEqual(run.notTransited, [], 'requests whose content never reached the upstream')
    assert.deepEqual(run.misbehaved, [], 'decision-core paths that did not do what they are for')
    assert.ok(run.decisions.got >= run.decisions.min && run.decisions.got <= run.decisions.max,
      `decision records: got ${run.decisions.got}, expected ${run.decisions.min}..${run.decisions.max} (one per request with a valid key)`)
  })

  await t.test(`TRANSIT-1 (${backend}): every positive control is found by the same scanner (else the scan is INVALID)`, () => {
    const missing: string[] = []
    for (const c of run.controls) {
      for (const s of c.sources) {
        if (!scanner.found(c.marker, s, c.encodings)) missing.push(`${c.name} — not found in ${s}${c.encodings ? ` as ${c.encodings.join('/')}` : ''}`)
      }
    }
    t.diagnostic(`${backend}: ${run.controls.reduce((n, c) => n + c.sources.length, 0) - missing.length}/${run.controls.reduce((n, c) => n + c.sources.length, 0)} control placements found`)
    assert.deepEqual(missing, [], 'INVALID: positive controls the scanner did not find')
    // The workload markers use their own anchors: prove the scanner sees each of them too.
    const unseen = M.workload().filter((m) => !scanner.found(m.marker, SELF_CHECK)).map((m) => m.label)
    t.diagnostic(`${backend}: ${M.workload().length - unseen.length}/${M.workload().length} workload markers and issued keys found by the scanner in the requests as sent`)
    assert.deepEqual(unseen, [], 'INVALID: workload markers the scanner cannot find even in the requests that carried them')
  })

  await t.test(`TRANSIT-4 (${backend}): the log allowlist drops a non-allowlisted field (its decoy is nowhere)`, () => {
    assert.ok(scanner.found(run.controls.find((c) => c.name === 'log line, allowlisted field')!.marker, 'log (raw lines)'), 'the allowlisted decoy is in the log')
    assert.deepEqual(scanner.hitsOf(run.dropped).map((h) => describe(M, h)), [], 'the non-allowlisted field reached a log')
  })

  await t.test(`TRANSIT-1 KEY-1 (${backend}): no workload marker or issued key in any byte written (database, WAL, logs, temp files, cache, traced writes)`, () => {
    const leaks = scanner.hits.filter((h) => !NOT_STORAGE.has(h.source) && h.family !== 'control').map((h) => describe(M, h))
    const partial = scanner.partials.filter((p) => !NOT_STORAGE.has(p.source) && p.families.some((f) => f !== 'control')).map((p) => `${p.source} @ ${p.location}+${p.offset}: a truncated workload marker`)
    assert.deepEqual([...leaks, ...partial], [], 'workload markers found where nothing may be written')
  })

  await t.test(`GW-2 (${backend}): no answer echoes request content or upstream error text`, () => {
    const byId = new Map(results.map((r) => [`call#${r.call.id}`, r]))
    const echoed = scanner.hits.filter((h) => h.source === RESPONSES && h.family !== 'control').filter((h) => {
      const r = byId.get(h.location)
      const answered = r !== undefined && (r.status === 200 || (r.status === 'aborted' && r.httpStatus === 200))
      return !(answered && r.call.echoOk.includes(h.marker))
    }).map((h) => describe(M, h))
    const partial = scanner.partials.filter((p) => p.source === RESPONSES && byId.get(p.location)?.status !== 'aborted').map((p) => `${p.location}: a truncated marker`)
    assert.deepEqual([...echoed, ...partial], [], 'markers echoed back to the client')
  })
}

test('TRANSIT-1: canary with positive controls — SQLite instance (db, -wal, -shm, copies, rows, logs, temp files, traced writes)', async (t) => {
  const run = await runCanary(t, 'sqlite')
  if (run) await verdicts(t, 'sqlite', run)
})

test('TRANSIT-1: canary with positive controls — PostgreSQL + Redis instance (pg_dump, rows, data files, WAL, server log, every Redis key, RDB)', async (t) => {
  const run = await runCanary(t, 'postgres')
  if (run) await verdicts(t, 'postgres + redis', run)
})
