// PII spans are exact: replacing them with placeholders removes every PII value of the fixture,
// and leaves the negatives untouched.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { detectPiiInSegments, ibanValid, luhnValid, ssnValid } from '../../src/classify/pii.ts'
import { placeholder, redactSegments } from '../../src/classify/redact.ts'
import { loadPii } from './fixture.ts'

test('GW-7: replacing the detected spans with placeholders removes every PII value in the fixture', async () => {
  const cases = loadPii()
  const survivors: string[] = []
  for (const c of cases) {
    const found = await detectPiiInSegments([c.text])
    const [redacted] = redactSegments([c.text], found)
    for (const p of c.pii) {
      if (redacted!.includes(p.value)) survivors.push(`${c.id}: ${p.value} survived in "${redacted}"`)
      if (!redacted!.includes(placeholder(p.kind))) survivors.push(`${c.id}: no ${placeholder(p.kind)} in "${redacted}"`)
    }
    if (c.pii.length === 0) assert.equal(redacted, c.text, `${c.id}: a negative example was changed`)
  }
  assert.deepEqual(survivors, [])
})

test('GW-7: redaction works per segment and per kind, and overlapping spans do not corrupt the text', () => {
  const segments = ['sys: be nice', 'mail a@corp.com or call (415) 867-5309', 'nothing here']
  const pii = [
    { kind: 'EMAIL_ADDRESS' as const, count: 1, confidence: 0.99, spans: [{ segment: 1, start: 5, end: 15 }] },
    { kind: 'PHONE_NUMBER' as const, count: 1, confidence: 0.9, spans: [{ segment: 1, start: 24, end: 38 }] },
  ]
  assert.deepEqual(redactSegments(segments, pii), ['sys: be nice', 'mail [EMAIL_ADDRESS] or call [PHONE_NUMBER]', 'nothing here'])
  assert.deepEqual(redactSegments(segments, pii, new Set(['PHONE_NUMBER'])), ['sys: be nice', 'mail a@corp.com or call [PHONE_NUMBER]', 'nothing here'])
  const overlapping = [...pii, { kind: 'PERSON' as const, count: 1, confidence: 0.5, spans: [{ segment: 1, start: 10, end: 20 }] }]
  assert.equal(redactSegments(segments, overlapping)[1], 'mail [EMAIL_ADDRESS] or call [PHONE_NUMBER]')
})

test('GW-7: validators — Luhn, IBAN mod-97 and SSN exclusions', () => {
  assert.ok(luhnValid('4111111111111111'))
  assert.ok(!luhnValid('4111111111111112'))
  assert.ok(ibanValid('GB82 WEST 1234 5698 7654 32'))
  assert.ok(!ibanValid('GB82 WEST 1234 5698 7654 33'))
  assert.ok(!ibanValid('DE12 AB34 CD56'))
  assert.ok(ssnValid('536', '22', '8451'))
  for (const [a, g, s] of [['000', '12', '3456'], ['666', '45', '1234'], ['900', '12', '3456'], ['536', '00', '8451'], ['536', '22', '0000'], ['078', '05', '1120']]) assert.ok(!ssnValid(a!, g!, s!), `${a}-${g}-${s}`)
})

test('GW-7: a PII value straddling a scan window (4 KB) is found exactly once', async () => {
  for (const offset of [4096 - 20, 4096 - 5, 4096, 8192 - 12, 32_768 - 6]) {
    const text = `${'x '.repeat(offset / 2)}write to jane.roe@corp.example.org please`
    const found = await detectPiiInSegments([text])
    const email = found.find((f) => f.kind === 'EMAIL_ADDRESS')
    assert.equal(email?.count, 1, `offset ${offset}`)
    assert.equal(text.slice(email!.spans[0]!.start, email!.spans[0]!.end), 'jane.roe@corp.example.org')
  }
})
