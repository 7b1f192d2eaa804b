// KEY-1 / KEY-2 (security-tests T40): the key format of D6, measured over many minted keys.
// TOLLGATE_TEST_LEVEL=full mints 100,000 keys instead of 10,000.
import assert from 'node:assert/strict'
import { randomInt } from 'node:crypto'
import { test } from 'node:test'
import { base62, fromBase62 } from '../../src/core/crypto.ts'
import { mintKey, parseKey, SECRET_BYTES, type KeyEnvironment } from '../../src/keys/key-format.ts'

const FULL = process.env['TOLLGATE_TEST_LEVEL'] === 'full'
const N = FULL ? 100_000 : 10_000
const TRIALS = 10_000
const SHAPE = /^tg_(live|test)_([0-9A-Za-z]{17})_([0-9A-Za-z]{33})([0-9A-Za-z]{6})$/
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

function mintMany(n: number): { key: string; id: string; environment: KeyEnvironment }[] {
  return Array.from({ length: n }, (_, i) => {
    const environment: KeyEnvironment = i % 2 === 0 ? 'sandbox' : 'production'
    return { ...mintKey(environment), environment }
  })
}

/** Pearson's chi-square of byte frequencies against uniform (255 degrees of freedom). */
function chiSquare(bytes: Uint8Array): number {
  const counts = new Array<number>(256).fill(0)
  for (const b of bytes) counts[b]!++
  const expected = bytes.length / 256
  return counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0)
}
/** chi-square(255) critical value for p = 0.001. */
const CHI2_P001 = 330.52

let minted: ReturnType<typeof mintMany> | undefined
/** The N keys, minted once for the tests that only read them. */
const sample = () => (minted ??= mintMany(N))

function secretBytes(keys: readonly { key: string }[]): Buffer {
  return Buffer.concat(keys.map(({ key }) => fromBase62(SHAPE.exec(key)![3]!, SECRET_BYTES)!))
}

test(`KEY-1 KEY-2: ${N.toLocaleString('en')} minted keys are unique, carry exactly 192 random bits, and their prefix names their environment`, () => {
  assert.equal(SECRET_BYTES, 24)
  const keys = sample()
  assert.equal(new Set(keys.map((k) => k.key)).size, N, 'every key is unique')
  assert.equal(new Set(keys.map((k) => k.id)).size, N, 'every public id is unique')
  const topBytes = new Set<number>()
  for (const { key, id, environment } of keys) {
    const m = SHAPE.exec(key)
    assert.ok(m, `well-formed: ${key.slice(0, 12)}…`)
    assert.equal(m[1], environment === 'production' ? 'live' : 'test', 'tg_live_ is production, tg_test_ is sandbox')
    assert.equal(m[2], id)
    assert.deepEqual(parseKey(key), { environment, id })
    // The secret part is the fixed-width base62 of exactly 24 bytes: it decodes to 24 bytes and back.
    const secret = m[3]!
    const decoded = fromBase62(secret, SECRET_BYTES)
    assert.ok(decoded, 'the secret fits in 24 bytes')
    assert.equal(decoded.length, 24)
    assert.equal(base62(decoded), secret, 'the encoding is canonical (no spare bits)')
    topBytes.add(decoded[0]!)
  }
  // All 24 bytes are random, the first included: its 256 values all occur (P(miss one) < 1e-15 at N = 10,000).
  assert.equal(topBytes.size, 256)
})

test('KEY-1: the secret bytes pass a byte-frequency chi-square smoke test (p > 0.001)', () => {
  // A uniform source fails this at p = 0.001 once in 1,000 runs; a fresh sample is drawn once
  // before failing, so a real bias fails and a fluke does not.
  const first = chiSquare(secretBytes(sample()))
  if (first < CHI2_P001) return
  const second = chiSquare(secretBytes(mintMany(N)))
  assert.ok(second < CHI2_P001, `chi-square ${first.toFixed(1)} then ${second.toFixed(1)}, both ≥ ${CHI2_P001} (p ≤ 0.001)`)
})

test(`KEY-1: the checksum detects 100% of single-character corruptions over ${TRIALS.toLocaleString('en')} trials`, () => {
  let detected = 0
  for (let i = 0; i < TRIALS; i++) {
    const { key } = mintKey(i % 2 === 0 ? 'sandbox' : 'production')
    const pos = randomInt(key.length)
    let replacement: string
    do replacement = BASE62[randomInt(62)]!
    while (replacement === key[pos])
    const corrupted = key.slice(0, pos) + replacement + key.slice(pos + 1)
    if (parseKey(corrupted) === undefined) detected++
  }
  assert.equal(detected, TRIALS)
  // The checksum also catches corruptions confined to the secret, position by position.
  const { key } = mintKey('production')
  const start = key.length - 6 - 33
  for (let pos = start; pos < key.length; pos++) {
    for (const c of BASE62) {
      if (c === key[pos]) continue
      assert.equal(parseKey(key.slice(0, pos) + c + key.slice(pos + 1)), undefined, `corruption at ${pos}`)
    }
  }
})
