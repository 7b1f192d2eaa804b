import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { isAbsolute, join, resolve } from 'node:path'
import { test } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { createGzip, crc32 } from 'node:zlib'
import { ERRORS, type ErrorCode } from '../../src/core/errors.ts'
import { orgWithKeys, startApp, type TestApp } from '../helpers/app.ts'
import { walkFiles } from '../helpers/scan.ts'

/**
 * T92 (LIMIT-3, ASVS 5.1.1, 5.2.1–5.2.3): attachments that are too many, too large once decoded
 * (in total or one by one), of a type their bytes contradict, archives (zip/gzip bombs declaring
 * or really holding a huge expansion, zips with thousands of entries) and path-shaped filenames,
 * in the native format and as inline images in the Anthropic and OpenAI formats. Every one is
 * refused with a 4xx in the caller's format before anything is decoded or expanded — sizes come
 * from base64 lengths, archives are refused by type — with one decision record and nothing else
 * changed, peak RSS growth under 200 MB, no file written (data dir and the temp dir scanned for
 * the attachments' bytes, with a positive control) and filenames never used as paths.
 */

const MAX_COUNT = 4
const MAX_BYTES = 64 * 1024
const MAX_TOTAL = 128 * 1024
const RSS_BOUND = 200 * 1024 * 1024

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

type Format = 'anthropic' | 'openai' | 'native'
const PATHS: Record<Format, string> = { anthropic: '/v1/messages', openai: '/v1/chat/completions', native: '/v1/intercept' }

const run = randomBytes(5).toString('hex')
/** Bytes planted in every attachment: found in a file, they prove it was written. */
const MARK = `T92MARK${run}`

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0])
const GIF = Buffer.from('GIF89a', 'latin1')
const ZIP = Buffer.from([0x50, 0x4b, 0x03, 0x04])

/** An image-shaped payload of `n` decoded bytes: magic, the marker, filler. */
function image(magic: Buffer, n: number): Buffer {
  const b = Buffer.alloc(n, 0x41)
  magic.copy(b, 0)
  Buffer.from(MARK).copy(b, magic.length)
  return b
}

function text(n: number): Buffer {
  const b = Buffer.alloc(n, 0x61)
  Buffer.from(MARK).copy(b, 0)
  return b
}

const b64 = (b: Buffer) => b.toString('base64')

function zipEntry(name: string, data: Buffer, declaredSize: number): { local: Buffer; central: Buffer } {
  const n = Buffer.from(name)
  const local = Buffer.alloc(30)
  local.writeUInt32LE(0x04034b50, 0)
  local.writeUInt16LE(20, 4)
  local.writeUInt16LE(8, 8) // deflate
  local.writeUInt32LE(crc32(data), 14)
  local.writeUInt32LE(data.length, 18)
  local.writeUInt32LE(declaredSize >>> 0, 22)
  local.writeUInt16LE(n.length, 26)
  const central = Buffer.alloc(46)
  central.writeUInt32LE(0x02014b50, 0)
  central.writeUInt16LE(20, 4)
  central.writeUInt16LE(20, 6)
  central.writeUInt16LE(8, 10)
  central.writeUInt32LE(crc32(data), 16)
  central.writeUInt32LE(data.length, 20)
  central.writeUInt32LE(declaredSize >>> 0, 24)
  central.writeUInt16LE(n.length, 28)
  return { local: Buffer.concat([local, n, data]), central: Buffer.concat([central, n]) }
}

/** A zip: entries with path-traversal names, each declaring a huge uncompressed size. */
function zip(entries: { name: string; data: Buffer; declared: number }[]): Buffer {
  const locals: Buffer[] = []
  const centrals: Buffer[] = []
  let offset = 0
  for (const e of entries) {
    const { local, central } = zipEntry(e.name, e.data, e.declared)
    central.writeUInt32LE(offset, 42)
    locals.push(local)
    centrals.push(central)
    offset += local.length
  }
  const cd = Buffer.concat(centrals)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(Math.min(entries.length, 0xffff), 8)
  end.writeUInt16LE(Math.min(entries.length, 0xffff), 10)
  end.writeUInt32LE(cd.length, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...locals, cd, end])
}

/** A real gzip bomb: `mb` MiB of zeros, a few hundred KB on the wire. Built in chunks (no big buffer here either). */
async function gzipBomb(mb: number): Promise<Buffer> {
  const gz = createGzip({ level: 9 })
  const out: Buffer[] = []
  gz.on('data', (c: Buffer) => out.push(c))
  const done = new Promise((r) => gz.on('end', r))
  const zero = Buffer.alloc(1 << 20)
  for (let i = 0; i < mb; i++) if (!gz.write(zero)) await new Promise((r) => gz.once('drain', r))
  gz.end()
  await done
  return Buffer.concat(out)
}

/** A gzip member that is small but declares (ISIZE) 4 GiB uncompressed. */
function declaredGzip(): Buffer {
  const member = Buffer.from(storedGzip(text(100)))
  member.writeUInt32LE(0xffffffff, member.length - 4)
  return member
}
/** A deterministic minimal gzip of `b` (one stored deflate block). */
function storedGzip(b: Buffer): Buffer {
  const header = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])
  const block = Buffer.alloc(5)
  block[0] = 1
  block.writeUInt16LE(b.length, 1)
  block.writeUInt16LE(~b.length & 0xffff, 3)
  const trailer = Buffer.alloc(8)
  trailer.writeUInt32LE(crc32(b), 0)
  trailer.writeUInt32LE(b.length, 4)
  return Buffer.concat([header, block, b, trailer])
}

interface Res {
  readonly status: number
  readonly text: string
  readonly json: any
}

interface World {
  readonly tg: TestApp
  readonly auth: Record<string, string>
  readonly keyId: string
}

async function send(w: World, format: Format, body: unknown): Promise<Res> {
  const res = await fetch(w.tg.url + PATHS[format], { method: 'POST', headers: { 'content-type': 'application/json', ...w.auth }, body: typeof body === 'string' ? body : JSON.stringify(body) })
  const t = await res.text()
  let json: unknown
  try {
    json = JSON.parse(t)
  } catch {
    json = undefined
  }
  return { status: res.status, text: t, json }
}

/** The code and param of an error, read from each API's own shape. */
function errorOf(format: Format, r: Res): { code: string; param: string | null } {
  if (format === 'anthropic') {
    const m = /^(.*?)(?: \((.+)\))?$/.exec(r.json.error.message as string)!
    const code = (Object.entries(ERRORS).find(([, v]) => v.message === m[1])?.[0]) ?? 'unknown'
    return { code, param: m[2] ?? null }
  }
  return { code: r.json.error.code, param: r.json.error.param ?? null }
}

async function decisionCount(tg: TestApp): Promise<number> {
  await tg.deps.decisions.drain()
  return (await tg.deps.db.db.selectFrom('decision').select('id').execute()).length
}

async function otherRows(tg: TestApp): Promise<string> {
  const out: number[] = []
  for (const t of ['org', 'org_key', 'api_key', 'audit_event', 'idempotency_key'] as const) {
    try {
      const r = await tg.deps.db.db.selectFrom(t as 'org').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
      out.push(Number(r.n))
    } catch {
      out.push(-1)
    }
  }
  return out.join(',')
}

interface Case {
  readonly what: string
  readonly format: Format
  readonly body: () => unknown
  readonly code: ErrorCode
  /** The param the answer must name (exactly). */
  readonly param: string
}

function nativeBody(attachments: { mime_type: string; data: string; filename?: string }[]) {
  return { model: 'local-echo', prompt: 'summarise the attachment', attachments }
}
function anthropicBody(images: { media_type: string; data: string }[]) {
  return { model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: [...images.map((i) => ({ type: 'image', source: { type: 'base64', ...i } })), { type: 'text', text: 'describe' }] }] }
}
function openaiBody(urls: string[]) {
  return { model: 'gpt-4o', messages: [{ role: 'user', content: [{ type: 'text', text: 'describe' }, ...urls.map((url) => ({ type: 'image_url', image_url: { url } }))] }] }
}

test('T92 LIMIT-3: too many, too large (decoded, alone or in total), mismatched and archive attachments are refused before decoding or expansion; RSS bounded; no file written; filenames never used as paths', async (t) => {
  const tg = await startApp(t, { env: { TOLLGATE_MAX_ATTACHMENTS: String(MAX_COUNT), TOLLGATE_MAX_ATTACHMENT_BYTES: String(MAX_BYTES), TOLLGATE_MAX_ATTACHMENTS_TOTAL_BYTES: String(MAX_TOTAL) } })
  if (!tg) return
  const keys = await orgWithKeys(tg.deps)
  const w: World = { tg, auth: { authorization: `Bearer ${keys.sandbox}` }, keyId: keys.sandboxId }
  const started = Date.now()
  const tmp = tmpdir()
  const dataFilesBefore = walkFiles(tg.dataDir).files.map((f) => f.path).sort()

  const bomb = await gzipBomb(256)
  assert.ok(bomb.length < 400_000, `the gzip bomb is small on the wire (${bomb.length} bytes for 256 MiB)`)
  const zipBomb = zip([{ name: '../../../../tmp/zip-slip-' + run, data: storedGzip(text(64)).subarray(10, -8), declared: 0xffffffff }])
  const manyEntries = zip(Array.from({ length: 5000 }, (_, i) => ({ name: `../f${i}`, data: Buffer.alloc(0), declared: 0xffffffff })))
  const bigImage = image(PNG, 7 * 1024 * 1024) // 9.3 MB of base64: under the 10 MB body limit, far over the attachment limit
  const slightlyBig = image(PNG, MAX_BYTES + 1)

  const cases: Case[] = [
    // Native format.
    { what: 'more attachments than TOLLGATE_MAX_ATTACHMENTS', format: 'native', body: () => nativeBody(Array.from({ length: MAX_COUNT + 1 }, () => ({ mime_type: 'text/plain', data: b64(text(16)) }))), code: 'invalid_request', param: 'attachments' },
    { what: 'one attachment a byte over TOLLGATE_MAX_ATTACHMENT_BYTES decoded', format: 'native', body: () => nativeBody([{ mime_type: 'text/plain', data: b64(text(MAX_BYTES + 1)) }]), code: 'attachment_rejected', param: 'attachments[0].data' },
    { what: 'a 7 MiB image', format: 'native', body: () => nativeBody([{ mime_type: 'image/png', data: b64(bigImage) }]), code: 'attachment_rejected', param: 'attachments[0].data' },
    { what: 'together over TOLLGATE_MAX_ATTACHMENTS_TOTAL_BYTES', format: 'native', body: () => nativeBody([0, 1, 2].map(() => ({ mime_type: 'text/plain', data: b64(text(50 * 1024)) }))), code: 'attachment_rejected', param: 'attachments' },
    { what: 'image/png holding GIF bytes', format: 'native', body: () => nativeBody([{ mime_type: 'image/png', data: b64(image(GIF, 256)) }]), code: 'attachment_rejected', param: 'attachments[0].data' },
    { what: 'image/jpeg holding PNG bytes', format: 'native', body: () => nativeBody([{ mime_type: 'image/jpeg', data: b64(image(PNG, 256)) }]), code: 'attachment_rejected', param: 'attachments[0].data' },
    { what: 'image/png holding a zip', format: 'native', body: () => nativeBody([{ mime_type: 'image/png', data: b64(zipBomb) }]), code: 'attachment_rejected', param: 'attachments[0].data' },
    { what: 'text/plain holding invalid UTF-8 (binary)', format: 'native', body: () => nativeBody([{ mime_type: 'text/plain', data: b64(Buffer.concat([text(32), Buffer.from([0xff, 0xfe, 0x00, 0x80])])) }]), code: 'attachment_rejected', param: 'attachments[0].data' },
    { what: 'a zip bomb declared as application/zip (entry ../../tmp/…, 4 GiB declared)', format: 'native', body: () => nativeBody([{ mime_type: 'application/zip', data: b64(zipBomb), filename: '../../bomb.zip' }]), code: 'attachment_rejected', param: 'attachments[0].mime_type' },
    { what: 'a zip with 5,000 entries', format: 'native', body: () => nativeBody([{ mime_type: 'application/zip', data: b64(manyEntries) }]), code: 'attachment_rejected', param: 'attachments[0].mime_type' },
    { what: 'a gzip bomb (256 MiB of zeros) as application/gzip', format: 'native', body: () => nativeBody([{ mime_type: 'application/gzip', data: b64(bomb) }]), code: 'attachment_rejected', param: 'attachments[0].mime_type' },
    { what: 'a gzip bomb as application/x-gzip', format: 'native', body: () => nativeBody([{ mime_type: 'application/x-gzip', data: b64(bomb) }]), code: 'attachment_rejected', param: 'attachments[0].mime_type' },
    { what: 'a gzip bomb as application/octet-stream', format: 'native', body: () => nativeBody([{ mime_type: 'application/octet-stream', data: b64(bomb) }]), code: 'attachment_rejected', param: 'attachments[0].mime_type' },
    { what: 'a gzip bomb disguised as text/plain', format: 'native', body: () => nativeBody([{ mime_type: 'text/plain', data: b64(bomb) }]), code: 'attachment_rejected', param: 'attachments[0].data' },
    { what: 'a small gzip declaring 4 GiB, as text/plain', format: 'native', body: () => nativeBody([{ mime_type: 'text/plain', data: b64(declaredGzip()) }]), code: 'attachment_rejected', param: 'attachments[0].data' },
    // Anthropic format: inline base64 images.
    { what: 'a 7 MiB image', format: 'anthropic', body: () => anthropicBody([{ media_type: 'image/png', data: b64(bigImage) }]), code: 'attachment_rejected', param: 'messages[0].content[0].source.data' },
    { what: 'an image a byte over the limit', format: 'anthropic', body: () => anthropicBody([{ media_type: 'image/png', data: b64(slightlyBig) }]), code: 'attachment_rejected', param: 'messages[0].content[0].source.data' },
    { what: 'more images than TOLLGATE_MAX_ATTACHMENTS', format: 'anthropic', body: () => anthropicBody(Array.from({ length: MAX_COUNT + 1 }, () => ({ media_type: 'image/png', data: b64(image(PNG, 64)) }))), code: 'invalid_request', param: 'messages' },
    { what: 'images together over the total', format: 'anthropic', body: () => anthropicBody([0, 1, 2].map(() => ({ media_type: 'image/png', data: b64(image(PNG, 50 * 1024)) }))), code: 'attachment_rejected', param: 'messages' },
    { what: 'a large document (PDF) block', format: 'anthropic', body: () => ({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: b64(text(MAX_BYTES * 2)) } }] }] }), code: 'attachment_rejected', param: 'messages[0].content[0].source.data' },
    { what: 'a large image inside a tool result', format: 'anthropic', body: () => ({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: b64(slightlyBig) } }] }] }] }), code: 'attachment_rejected', param: 'messages[0].content[0].content[0].source.data' },
    { what: 'image/png holding JPEG bytes', format: 'anthropic', body: () => anthropicBody([{ media_type: 'image/png', data: b64(image(JPEG, 256)) }]), code: 'attachment_rejected', param: 'messages[0].content[0].source.data' },
    { what: 'a zip declared as its media type', format: 'anthropic', body: () => anthropicBody([{ media_type: 'application/zip', data: b64(zipBomb) }]), code: 'attachment_rejected', param: 'messages[0].content[0].source.media_type' },
    { what: 'a gzip bomb declared as image/png', format: 'anthropic', body: () => anthropicBody([{ media_type: 'image/png', data: b64(bomb) }]), code: 'attachment_rejected', param: 'messages[0].content[0].source.data' },
    // OpenAI format: data URLs.
    { what: 'a 7 MiB image', format: 'openai', body: () => openaiBody([`data:image/png;base64,${b64(bigImage)}`]), code: 'attachment_rejected', param: 'messages[0].content[1].image_url.url' },
    { what: 'an image a byte over the limit', format: 'openai', body: () => openaiBody([`data:image/png;base64,${b64(slightlyBig)}`]), code: 'attachment_rejected', param: 'messages[0].content[1].image_url.url' },
    { what: 'more images than TOLLGATE_MAX_ATTACHMENTS', format: 'openai', body: () => openaiBody(Array.from({ length: MAX_COUNT + 1 }, () => `data:image/png;base64,${b64(image(PNG, 64))}`)), code: 'invalid_request', param: 'messages' },
    { what: 'images together over the total', format: 'openai', body: () => openaiBody([0, 1, 2].map(() => `data:image/png;base64,${b64(image(PNG, 50 * 1024))}`)), code: 'attachment_rejected', param: 'messages' },
    { what: 'image/gif holding PNG bytes', format: 'openai', body: () => openaiBody([`data:image/gif;base64,${b64(image(PNG, 256))}`]), code: 'attachment_rejected', param: 'messages[0].content[1].image_url.url' },
    { what: 'a small zip as a data URL of type application/zip', format: 'openai', body: () => openaiBody([`data:application/zip;base64,${b64(zipBomb)}`]), code: 'attachment_rejected', param: 'messages[0].content[1].image_url.url' },
    { what: 'a gzip bomb as a data URL of type application/gzip', format: 'openai', body: () => openaiBody([`data:application/gzip;base64,${b64(bomb)}`]), code: 'attachment_rejected', param: 'messages[0].content[1].image_url.url' },
    { what: 'a zip as a data URL of type image/png', format: 'openai', body: () => openaiBody([`data:image/png;base64,${b64(zipBomb)}`]), code: 'attachment_rejected', param: 'messages[0].content[1].image_url.url' },
    { what: 'a large file part', format: 'openai', body: () => ({ model: 'gpt-4o', messages: [{ role: 'user', content: [{ type: 'file', file: { filename: '../../x.pdf', file_data: `data:application/pdf;base64,${b64(text(MAX_BYTES * 2))}` } }] }] }), code: 'attachment_rejected', param: 'messages[0].content[0].file.file_data' },
  ]

  // Warm up (the classifier's model loads on first use). The request bodies are built before
  // measuring, and each request's peak is measured from a settled (GC'd) baseline: what is
  // measured is what the server does with the request.
  const warm = await send(w, 'native', nativeBody([{ mime_type: 'text/plain', data: b64(text(100)) }]))
  assert.equal(warm.status, 200, warm.text)
  const bodies = cases.map((c) => JSON.stringify(c.body()))
  const protoBefore = Object.getOwnPropertyNames(Object.prototype).sort().join()
  let baseline = 0
  let peak = 0
  let worst = { growth: 0, what: '', baseline: 0 }
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss) }, 5)
  // The server runs in this process: watch every base64 decode it does while refusing. Nothing
  // over a few KB may be decoded (sizes come from base64 lengths; magic bytes from 24 characters).
  const decodes: number[] = []
  const from = Buffer.from
  const spy = function (this: unknown, ...args: unknown[]) {
    if (typeof args[0] === 'string' && (args[1] === 'base64' || args[1] === 'base64url')) decodes.push(args[0].length)
    return (from as (...a: unknown[]) => Buffer).apply(Buffer, args)
  }
  Buffer.from = spy as typeof Buffer.from

  const failures: string[] = []
  try {
    for (const [k, c] of cases.entries()) {
      const label = `${c.format}: ${c.what}`
      const before = await decisionCount(tg)
      const rows = await otherRows(tg)
      gc()
      baseline = process.memoryUsage().rss
      peak = baseline
      const res = await send(w, c.format, bodies[k]!)
      peak = Math.max(peak, process.memoryUsage().rss)
      if (peak - baseline > worst.growth) worst = { growth: peak - baseline, what: label, baseline }
      if (res.status !== ERRORS[c.code].status || !res.json) {
        failures.push(`${label}: expected ${ERRORS[c.code].status}, got ${res.status} ${res.text.slice(0, 200)}`)
        continue
      }
      const e = errorOf(c.format, res)
      if (e.code !== c.code || e.param !== c.param) failures.push(`${label}: expected ${c.code} (${c.param}), got ${e.code} (${e.param})`)
      if (res.text.includes(MARK) || res.text.includes('..') || /node_modules|\.ts:\d+/.test(res.text)) failures.push(`${label}: the answer echoes input or internals`)
      if ((await decisionCount(tg)) - before !== 1) failures.push(`${label}: not exactly one decision record`)
      if ((await otherRows(tg)) !== rows) failures.push(`${label}: another table changed`)
    }
  } finally {
    clearInterval(sampler)
  }
  assert.ok(decodes.length > 0, 'the spy sees the magic-byte reads')
  assert.ok(Math.max(...decodes) <= 4096, `no attachment was decoded whole while refusing (largest base64 decode: ${Math.max(...decodes)} characters)`)
  decodes.length = 0
  assert.deepEqual(failures, [], failures.join('\n'))
  assert.ok(worst.growth < RSS_BOUND, `peak RSS grew ${Math.round(worst.growth / 1e6)} MB during ${worst.what} (bound ${RSS_BOUND / 1e6} MB)`)
  t.diagnostic(`${cases.length} refusals; largest peak RSS growth ${Math.round(worst.growth / 1e6)} MB (${worst.what}) over a ${Math.round(worst.baseline / 1e6)} MB baseline`)
  assert.equal(Object.getOwnPropertyNames(Object.prototype).sort().join(), protoBefore)

  // The limits are the settings, not something smaller: at the limits everything is accepted.
  const atLimit = await send(w, 'native', nativeBody([{ mime_type: 'text/plain', data: b64(text(MAX_BYTES)) }, { mime_type: 'text/plain', data: b64(text(MAX_TOTAL - MAX_BYTES)) }]))
  assert.equal(atLimit.status, 200, `attachments exactly at the limits are accepted: ${atLimit.text.slice(0, 200)}`)
  const fourImages = await send(w, 'anthropic', anthropicBody(Array.from({ length: MAX_COUNT }, () => ({ media_type: 'image/png', data: b64(image(PNG, 1024)) }))))
  assert.equal(fourImages.status, 200, fourImages.text.slice(0, 200))
  const imageAtLimit = await send(w, 'openai', openaiBody([`data:image/png;base64,${b64(image(PNG, MAX_BYTES))}`]))
  assert.equal(imageAtLimit.status, 200, imageAtLimit.text.slice(0, 200))
  Buffer.from = from
  // Positive control for the spy: an accepted text attachment is decoded whole, and the spy saw it.
  assert.ok(decodes.includes(b64(text(MAX_BYTES)).length), 'the spy sees a whole decode when one happens')

  // Filenames are never used as paths: path-shaped names pointing at places we can check.
  const planted = join(tmp, `t92-planted-${run}`)
  const names = [planted, `../../t92-rel-${run}`, `..\\..\\t92-win-${run}`, `/etc/t92-${run}`, `${'../'.repeat(20)}tmp/t92-deep-${run}`]
  for (const filename of [...names, `t92-${run}\u0000.txt`, `C:\\Windows\\t92-${run}`]) {
    const r = await send(w, 'native', nativeBody([{ mime_type: 'text/plain', data: b64(text(64)), filename }]))
    assert.equal(r.status, 200, `a path-shaped filename is just ignored: ${r.text.slice(0, 200)}`)
    assert.ok(!r.text.includes(run), 'the filename is not echoed')
  }
  for (const filename of names) {
    for (const base of [process.cwd(), tg.dataDir, tmp, '/'] as string[]) {
      const p: string = isAbsolute(filename) ? filename : resolve(base, filename)
      assert.equal(existsSync(p), false, `nothing was created at ${p}`)
    }
  }
  assert.equal(existsSync(`/tmp/zip-slip-${run}`), false, 'the zip entry name was not used as a path')

  // No file written: no new file in the data dir, and no file changed since the start — in the
  // data dir or the temp dir — holds an attachment's bytes. Positive control first.
  await tg.deps.decisions.drain()
  const control = join(tmp, `t92-control-${run}`)
  writeFileSync(control, `x${MARK}x`)
  const holding = () => walkFiles(tmp, { sinceMs: started - 1000, maxDepth: 6 }).files.concat(walkFiles(tg.dataDir).files)
    .filter((f) => f.size < 256 * 1024 * 1024)
    .filter((f) => {
      try {
        const bytes = readFileSync(f.path)
        return bytes.includes(MARK) || bytes.includes(b64(text(48)).slice(0, 40)) || bytes.includes(b64(image(PNG, 48)).slice(0, 40))
      } catch {
        return false
      }
    }).map((f) => f.path)
  assert.deepEqual(holding(), [control], 'the scan finds the planted control and nothing else')
  rmSync(control)
  assert.deepEqual(walkFiles(tg.dataDir).files.map((f) => f.path).filter((p) => !dataFilesBefore.includes(p)), [], 'no new file in the data dir')
})

test('T92 LIMIT-3: a request body sent with Content-Encoding: gzip is not inflated: refused with a 4xx', async (t) => {
  const tg = await startApp(t)
  if (!tg) return
  const keys = await orgWithKeys(tg.deps)
  const bomb = await gzipBomb(64)
  const before = process.memoryUsage().rss
  for (const path of ['/v1/intercept', '/v1/messages', '/api/me/sessions/end-others']) {
    const res = await fetch(tg.url + path, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', authorization: `Bearer ${keys.sandbox}` }, body: bomb })
    assert.ok(res.status >= 400 && res.status < 500, `${path}: ${res.status}`)
    await res.arrayBuffer()
  }
  assert.ok(process.memoryUsage().rss - before < RSS_BOUND, 'not expanded')
})
