// GW-4 speed: "a policy that needs no model adds ≤ 1 ms". evaluatePolicy + evaluateOutput are
// timed (bench/policy.ts, the same code `node --import tsx bench/policy.ts` runs) on the default
// policy and on a 100-rule policy that uses every condition kind, against varied facts.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { largePolicy, measure } from '../../bench/policy.ts'
import { DEFAULT_POLICY } from '../../src/policy/default-policy.ts'

test('GW-4: a policy that needs no model adds ≤ 1 ms — evaluation measured on the default and a 100-rule policy', (t) => {
  const doc = largePolicy(100)
  assert.equal(doc.rules.length, 100)
  for (const [name, d] of [['default policy', DEFAULT_POLICY], ['100-rule policy', doc]] as const) {
    const r = measure(d, 20_000)
    t.diagnostic(`${name}: mean ${r.meanUs.toFixed(2)} µs, p50 ${r.p50Us.toFixed(2)} µs, p99 ${r.p99Us.toFixed(2)} µs per evaluation (batches of 100)`)
    assert.ok(r.meanUs < 1000, `${name}: mean ${r.meanUs} µs`)
    assert.ok(r.p99Us < 1000, `${name}: p99 ${r.p99Us} µs`)
  }
})
