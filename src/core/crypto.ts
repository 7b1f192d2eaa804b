import { createHash, createHmac, randomBytes, randomFillSync, timingSafeEqual } from 'node:crypto'
import { crc32 } from 'node:zlib'

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

/** Fixed-width base62 of a big-endian unsigned byte string (width = enough digits for every value). */
export function base62(bytes: Uint8Array): string {
  const width = Math.ceil((bytes.length * 8) / Math.log2(62))
  let n = 0n
  for (const b of bytes) n = (n << 8n) | BigInt(b)
  let out = ''
  while (n > 0n) {
    out = BASE62[Number(n % 62n)] + out
    n /= 62n
  }
  return out.padStart(width, '0')
}

/** Decodes fixed-width base62 back into `byteLength` bytes; undefined when it does not fit. */
export function fromBase62(text: string, byteLength: number): Buffer | undefined {
  let n = 0n
  for (const ch of text) {
    const d = BASE62.indexOf(ch)
    if (d < 0) return undefined
    n = n * 62n + BigInt(d)
  }
  const out = Buffer.alloc(byteLength)
  for (let i = byteLength - 1; i >= 0; i--) {
    out[i] = Number(n & 0xffn)
    n >>= 8n
  }
  return n === 0n ? out : undefined
}

/** `n` bytes from the OS CSPRNG, as fixed-width base62. */
export function randomBase62(n: number): string {
  return base62(randomBytes(n))
}

// CSPRNG bytes drawn in 4 KiB refills: one syscall per many ids instead of one per id.
const POOL = Buffer.alloc(4096)
let poolAt = POOL.length

function poolByte(): number {
  if (poolAt >= POOL.length) {
    randomFillSync(POOL)
    poolAt = 0
  }
  return POOL[poolAt++]!
}

/**
 * `chars` uniformly random base62 characters from the OS CSPRNG (rejection sampling: bytes
 * ≥ 248 are discarded so every character is exactly 1/62 likely): ~5.95 bits per character.
 */
export function randomAlnum(chars: number): string {
  let out = ''
  while (out.length < chars) {
    const b = poolByte()
    if (b < 248) out += BASE62[b % 62]
  }
  return out
}

/** CRC-32 of a string as 6 base62 characters: a checksum secret scanners can verify offline. */
export function checksum62(text: string): string {
  // A 32-bit value fits a double exactly: plain arithmetic, same digits as base62() of its 4 bytes.
  let n = crc32(text) >>> 0
  let out = ''
  for (let i = 0; i < 6; i++) {
    out = BASE62[n % 62] + out
    n = Math.floor(n / 62)
  }
  return out
}

export function sha256(data: string | Uint8Array): Buffer {
  return createHash('sha256').update(data).digest()
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

export function hmacSha256(key: Uint8Array, data: string | Uint8Array): Buffer {
  return createHmac('sha256', key).update(data).digest()
}

/**
 * Constant-time equality for secrets of any length: both sides are hashed to 32 bytes first, so
 * `timingSafeEqual` never sees unequal lengths (no RangeError) and length leaks nothing.
 */
export function constantTimeEqual(a: string | Uint8Array, b: string | Uint8Array): boolean {
  return timingSafeEqual(sha256(a), sha256(b))
}

/** Equality of two digests that are already fixed-length (e.g. stored SHA-256 vs computed). */
export function digestsEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  return timingSafeEqual(a, b)
}
