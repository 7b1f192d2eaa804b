import { Content } from '../../core/content.ts'
import { TollgateError } from '../../core/errors.ts'
import { IMAGE_TYPES, type ImageType, type Part } from '../../core/model.ts'

/**
 * Small validators for client request bodies. A failure throws `invalid_request` (or
 * `attachment_rejected`) with the path of the bad field — built from schema names and indexes
 * only, never from the input.
 */
export type Obj = Record<string, unknown>

export function bad(param: string): TollgateError {
  return new TollgateError('invalid_request', undefined, param)
}

export function object(v: unknown, param: string): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(param)
  return v as Obj
}

export function array(v: unknown, param: string, min = 0, max = 100_000): unknown[] {
  if (!Array.isArray(v) || v.length < min || v.length > max) throw bad(param)
  return v
}

export function string(v: unknown, param: string, maxLen = Number.MAX_SAFE_INTEGER): string {
  if (typeof v !== 'string' || v.length > maxLen) throw bad(param)
  return v
}

export function optString(v: unknown, param: string, maxLen?: number): string | undefined {
  return v === undefined || v === null ? undefined : string(v, param, maxLen)
}

export function optInt(v: unknown, param: string, min: number, max: number): number | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(param)
  return v
}

export function optNumber(v: unknown, param: string, min: number, max: number): number | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw bad(param)
  return v
}

export function optBool(v: unknown, param: string): boolean | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'boolean') throw bad(param)
  return v
}

export function optStringList(v: unknown, param: string, maxItems = 16): string[] | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v === 'string') return [v]
  return array(v, param, 0, maxItems).map((s, i) => string(s, `${param}[${i}]`, 1000))
}

export function modelName(v: unknown, param = 'model'): string {
  const m = string(v, param, 256)
  // Printable, no spaces or control characters: the name goes into upstream URLs and bodies.
  if (!/^[\x21-\x7e]{1,256}$/.test(m)) throw bad(param)
  return m
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const MAGIC: Record<ImageType, (b: Buffer) => boolean> = {
  'image/png': (b) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])),
  'image/jpeg': (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff,
  'image/gif': (b) => b.subarray(0, 6).toString('latin1') === 'GIF87a' || b.subarray(0, 6).toString('latin1') === 'GIF89a',
  'image/webp': (b) => b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP',
}

export function imageType(v: unknown, param: string): ImageType {
  if (typeof v !== 'string' || !(IMAGE_TYPES as readonly string[]).includes(v)) throw new TollgateError('attachment_rejected', undefined, param)
  return v as ImageType
}

/** Checks base64 shape and that the first bytes are really an image of the declared type. Nothing is written anywhere. */
export function imagePart(mediaType: ImageType, data: unknown, param: string): Part {
  if (typeof data !== 'string' || data.length < 8 || data.length % 4 !== 0 || !BASE64.test(data)) throw new TollgateError('attachment_rejected', undefined, param)
  if (!MAGIC[mediaType](Buffer.from(data.slice(0, 24), 'base64'))) throw new TollgateError('attachment_rejected', undefined, param)
  return { kind: 'image', mediaType, data: Content.of(data) }
}

/** Only these request headers of a same-format Anthropic client are passed upstream. */
export function anthropicHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of ['anthropic-version', 'anthropic-beta']) {
    const v = headers[name]
    if (typeof v === 'string' && /^[A-Za-z0-9._,-]{1,256}$/.test(v)) out[name] = v
  }
  return out
}
