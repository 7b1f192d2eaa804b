/**
 * The `Idempotency-Key` request header (draft-ietf-httpapi-idempotency-key-header): an RFC 9651
 * sf-string such as `"8e03978e-…"`. A bare token is accepted too (what most clients send).
 * 1–255 printable ASCII characters; anything else is malformed (400).
 */
export type KeyParse = { readonly ok: true; readonly value: string } | { readonly ok: false }

const PRINTABLE = /^[\x20-\x7e]{1,255}$/
const BARE = /^[A-Za-z0-9._~:/+=-]{1,255}$/

export function parseIdempotencyKey(header: string | string[] | undefined): KeyParse | undefined {
  if (header === undefined) return undefined
  if (Array.isArray(header) || header.length > 600) return { ok: false }
  const h = header.trim()
  if (h.startsWith('"')) {
    if (!h.endsWith('"') || h.length < 3) return { ok: false }
    let out = ''
    for (let i = 1; i < h.length - 1; i++) {
      const c = h[i]!
      if (c === '\\') {
        const n = h[++i]
        if (n !== '"' && n !== '\\') return { ok: false }
        out += n
      } else if (c === '"') return { ok: false }
      else out += c
    }
    return PRINTABLE.test(out) ? { ok: true, value: out } : { ok: false }
  }
  return BARE.test(h) ? { ok: true, value: h } : { ok: false }
}

/**
 * Canonical JSON: object keys sorted at every depth, no whitespace. Two requests that differ only
 * in key order or spacing have the same fingerprint (D2).
 */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null'
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  const o = v as Record<string, unknown>
  return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`
}
