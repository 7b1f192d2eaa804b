import { TollgateError } from '../../core/errors.ts'
import { IMAGE_TYPES, type ClientFormat } from '../../core/model.ts'
import { TEXT_ATTACHMENT_TYPES } from './native.ts'
import { bad } from './validate.ts'

/** LIMIT-3: how many inline attachments one AI request may carry, and how large they may be once decoded. */
export interface AttachmentLimits {
  /** Attachments per request (native `attachments`; inline base64 images, documents, files, audio elsewhere). */
  readonly count: number
  /** Decoded bytes of one attachment. */
  readonly bytes: number
  /** Decoded bytes of all attachments of the request together. */
  readonly totalBytes: number
}

/** Bytes that base64 text decodes to, from its length alone: nothing is decoded to find out. */
export function base64DecodedBytes(b64: string): number {
  const n = b64.length
  let pad = 0
  if (n > 0 && b64.charCodeAt(n - 1) === 0x3d) pad++
  if (n > 1 && b64.charCodeAt(n - 2) === 0x3d) pad++
  return Math.max(0, Math.floor((n * 3) / 4) - pad)
}

/** Keys that may appear in an error's `param` path: schema names, never the client's own keys. */
const PATH_KEYS = new Set(['messages', 'system', 'content', 'source', 'data', 'image_url', 'url', 'file', 'file_data', 'input_audio'])

interface Found {
  readonly param: string
  readonly bytes: number
  /** Declared as a type no attachment may have (an archive, a binary): refused by that, whatever its size. */
  readonly refusedType?: string
}

const NATIVE_TYPES: readonly string[] = [...TEXT_ATTACHMENT_TYPES, ...IMAGE_TYPES]

/** The inline attachments of a request body in `format`, with their decoded sizes (from base64 lengths). */
function inlineAttachments(format: ClientFormat, body: unknown): Found[] {
  const out: Found[] = []
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return out
  const b = body as Record<string, unknown>
  if (format === 'native') {
    const list = b['attachments']
    if (!Array.isArray(list)) return out
    list.forEach((a, i) => {
      const o = a !== null && typeof a === 'object' ? (a as Record<string, unknown>) : {}
      const data = o['data']
      const type = o['mime_type']
      out.push({
        param: `attachments[${i}].data`, bytes: typeof data === 'string' ? base64DecodedBytes(data) : 0,
        ...(typeof type === 'string' && !NATIVE_TYPES.includes(type) ? { refusedType: `attachments[${i}].mime_type` } : {}),
      })
    })
    return out
  }
  // Anthropic and OpenAI: walk the messages (tool results nest content blocks) without recursion.
  const stack: { v: unknown; path: string; exact: boolean }[] = []
  for (const k of ['messages', 'system']) if (b[k] !== undefined) stack.push({ v: b[k], path: k, exact: true })
  while (stack.length > 0) {
    const { v, path, exact } = stack.pop()!
    if (v === null || typeof v !== 'object') continue
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ v: v[i], path: exact ? `${path}[${i}]` : path, exact })
      continue
    }
    const o = v as Record<string, unknown>
    const at = (k: string) => (exact ? `${path}.${k}` : path)
    if (format === 'anthropic' && o['type'] === 'base64' && typeof o['data'] === 'string') {
      out.push({ param: at('data'), bytes: base64DecodedBytes(o['data']) })
      continue
    }
    if (format === 'openai') {
      const image = o['image_url']
      const url = image !== null && typeof image === 'object' ? (image as Record<string, unknown>)['url'] : undefined
      if (typeof url === 'string' && url.startsWith('data:')) out.push({ param: exact ? `${path}.image_url.url` : path, bytes: base64DecodedBytes(url.slice(url.indexOf(',') + 1)) })
      const file = o['file']
      const fileData = file !== null && typeof file === 'object' ? (file as Record<string, unknown>)['file_data'] : undefined
      if (typeof fileData === 'string') out.push({ param: exact ? `${path}.file.file_data` : path, bytes: base64DecodedBytes(fileData.slice(fileData.indexOf(',') + 1)) })
      const audio = o['input_audio']
      const audioData = audio !== null && typeof audio === 'object' ? (audio as Record<string, unknown>)['data'] : undefined
      if (typeof audioData === 'string') out.push({ param: exact ? `${path}.input_audio.data` : path, bytes: base64DecodedBytes(audioData) })
    }
    // Pushed in reverse, popped in document order: the first attachment over a limit is the one named.
    for (const [k, child] of Object.entries(o).reverse()) {
      if (child !== null && typeof child === 'object') stack.push({ v: child, path: at(k), exact: exact && PATH_KEYS.has(k) })
    }
  }
  return out
}

/**
 * Refuses a request whose inline attachments are too many or too large, before anything is
 * decoded (the wire's parse decodes text attachments and checks image magic bytes after this):
 * more than `count` → 400 invalid_request; a native attachment of a type none may have (an
 * archive: never expanded) → 400 attachment_rejected on its mime_type; one over `bytes`, or all
 * together over `totalBytes` → 400 attachment_rejected, naming the attachment's path.
 */
export function checkAttachmentLimits(format: ClientFormat, body: unknown, limits: AttachmentLimits): void {
  const found = inlineAttachments(format, body)
  if (found.length > limits.count) throw bad(format === 'native' ? 'attachments' : 'messages')
  for (const f of found) if (f.refusedType) throw new TollgateError('attachment_rejected', undefined, f.refusedType)
  let total = 0
  for (const f of found) {
    if (f.bytes > limits.bytes) throw new TollgateError('attachment_rejected', { decoded_bytes: f.bytes, limit: limits.bytes }, f.param)
    total += f.bytes
    if (total > limits.totalBytes) throw new TollgateError('attachment_rejected', { decoded_bytes_total: total, limit: limits.totalBytes }, format === 'native' ? 'attachments' : 'messages')
  }
}
