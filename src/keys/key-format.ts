import { checksum62, randomBase62 } from '../core/crypto.ts'
import { newId } from '../core/ids.ts'

import type { Environment } from '../core/model.ts'

export type KeyEnvironment = Environment

const PREFIX: Record<KeyEnvironment, 'live' | 'test'> = { production: 'live', sandbox: 'test' }
const KEY = /^tg_(live|test)_([0-9A-Za-z]{17})_([0-9A-Za-z]{33})([0-9A-Za-z]{6})$/

/** Bytes of randomness in the secret part (KEY-1: 192 bits). */
export const SECRET_BYTES = 24

export interface ParsedKey {
  readonly environment: KeyEnvironment
  readonly id: string
}

/**
 * D6: `tg_live_<id>_<secret><checksum>` (production) or `tg_test_…` (sandbox). The id is public
 * (for lookup and display); the secret is 192 CSPRNG bits in base62; the 6-character CRC-32
 * suffix lets secret scanners recognise a real key offline without any lookup.
 */
export function mintKey(environment: KeyEnvironment): { id: string; key: string } {
  const id = newId()
  const body = `tg_${PREFIX[environment]}_${id}_${randomBase62(SECRET_BYTES)}`
  return { id, key: body + checksum62(body) }
}

/** Parses a presented key; undefined for anything that is not a well-formed key with a valid checksum. */
export function parseKey(presented: string): ParsedKey | undefined {
  const m = KEY.exec(presented)
  if (!m) return undefined
  const body = presented.slice(0, -6)
  if (checksum62(body) !== m[4]) return undefined
  return { environment: m[1] === 'live' ? 'production' : 'sandbox', id: m[2]! }
}
