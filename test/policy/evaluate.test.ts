// evaluatePolicy and evaluateOutput (GW-4, GW-6, GW-7): pure decision tables.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Facts } from '../../src/classify/facts.ts'
import { DEFAULT_POLICY } from '../../src/policy/default-policy.ts'
import { evaluateOutput, evaluatePolicy } from '../../src/policy/evaluate.ts'
import type { PolicySubject } from '../../src/policy/types.ts'
import { facts, pii, policy, safety, subject } from './fixtures.ts'

const rule = (id: string, when: Record<string, unknown>, action: string, extra: Record<string, unknown> = {}) => ({ id, when, action, reason: id.replace(/-/g, '_'), ...extra })

test('GW-4: the most restrictive enforced rule wins (block > challenge > redact > allow); ties go to the first in document order', () => {
  const doc = policy({
    default_action: 'allow',
    rules: [
      rule('a-allow', { domains: ['coding'] }, 'allow'),
      rule('r-redact', { pii: { kinds: ['EMAIL_ADDRESS'] } }, 'redact'),
      rule('c-challenge', { intents: ['learn'] }, 'challenge'),
      rule('b-block', { safety: { codes: ['S1'] } }, 'block'),
      rule('b-block-2', { safety: { codes: ['S1', 'S2'] } }, 'block'),
    ],
  })
  const table: [string, Partial<Facts>, string, string | null][] = [
    ['nothing but the allow rule', {}, 'allow', 'a-allow'],
    ['allow + redact', { pii: [pii('EMAIL_ADDRESS')] }, 'redact', 'r-redact'],
    ['allow + redact + challenge', { pii: [pii('EMAIL_ADDRESS')], intent: 'learn' }, 'challenge', 'c-challenge'],
    ['all four', { pii: [pii('EMAIL_ADDRESS')], intent: 'learn', safety: [safety('S1')] }, 'block', 'b-block'],
    ['block alone, tie between two block rules', { domain: 'math', safety: [safety('S1')] }, 'block', 'b-block'],
    ['the second block rule alone', { domain: 'math', safety: [safety('S2')] }, 'block', 'b-block-2'],
    ['no rule: the default', { domain: 'math' }, 'allow', null],
  ]
  for (const [name, over, action, ruleId] of table) {
    const d = evaluatePolicy(doc, facts(over), subject())
    assert.equal(d.action, action, name)
    assert.equal(d.ruleId, ruleId, name)
    assert.equal(d.reason, ruleId === null ? null : ruleId.replace(/-/g, '_'), name)
  }
})

test('GW-4: default_action applies only when no enforced rule matches (an allow rule is an exception to it)', () => {
  const doc = policy({ default_action: 'challenge', rules: [rule('coders-ok', { domains: ['coding'] }, 'allow')] })
  assert.equal(evaluatePolicy(doc, facts({ domain: 'coding' }), subject()).action, 'allow')
  const other = evaluatePolicy(doc, facts({ domain: 'legal' }), subject())
  assert.deepEqual([other.action, other.ruleId, other.reason], ['challenge', null, null])
  assert.equal(evaluatePolicy(policy({ default_action: 'block' }), facts(), subject()).action, 'block')
})

test('GW-7: redact kinds are the union over enforced redact rules, only the kinds found; kept under challenge, dropped under block', () => {
  const doc = policy({
    rules: [
      rule('ids', { pii: { kinds: ['US_SSN', 'CREDIT_CARD'] } }, 'redact'),
      rule('contact', { pii: { kinds: ['PHONE_NUMBER', 'EMAIL_ADDRESS'] } }, 'redact'),
      rule('learners', { intents: ['learn'] }, 'challenge'),
      rule('weapons', { safety: { codes: ['S9'] } }, 'block'),
    ],
  })
  const found = [pii('EMAIL_ADDRESS', 2), pii('US_SSN'), pii('PERSON')]
  const r = evaluatePolicy(doc, facts({ pii: found }), subject())
  assert.equal(r.action, 'redact')
  assert.equal(r.ruleId, 'ids', 'the first redact rule names the decision')
  assert.deepEqual(r.redact, ['EMAIL_ADDRESS', 'US_SSN'], 'canonical PII_KINDS order; PERSON is in no rule; CREDIT_CARD was not found')
  assert.deepEqual(evaluatePolicy(doc, facts({ pii: found, intent: 'learn' }), subject()).redact, ['EMAIL_ADDRESS', 'US_SSN'], 'under challenge the forwarded request is redacted too')
  const blocked = evaluatePolicy(doc, facts({ pii: found, safety: [safety('S9')] }), subject())
  assert.deepEqual([blocked.action, blocked.redact], ['block', []])
  assert.deepEqual(evaluatePolicy(doc, facts(), subject()).redact, [])
})

test('GW-7: pii conditions — kinds omitted means any kind; min_count totals the matching kinds; min_confidence drops weak findings', () => {
  const any = policy({ rules: [rule('any-pii', { pii: {} }, 'redact')] })
  assert.deepEqual(evaluatePolicy(any, facts({ pii: [pii('PERSON', 1, 0.4), pii('IP_ADDRESS')] }), subject()).redact, ['IP_ADDRESS', 'PERSON'])
  const many = policy({ rules: [rule('bulk', { pii: { kinds: ['EMAIL_ADDRESS', 'PHONE_NUMBER'], min_count: 3 } }, 'block')] })
  assert.equal(evaluatePolicy(many, facts({ pii: [pii('EMAIL_ADDRESS', 2)] }), subject()).action, 'allow')
  assert.equal(evaluatePolicy(many, facts({ pii: [pii('EMAIL_ADDRESS', 2), pii('PHONE_NUMBER', 1)] }), subject()).action, 'block')
  const sure = policy({ rules: [rule('names', { pii: { kinds: ['PERSON'], min_confidence: 0.7 } }, 'redact')] })
  assert.equal(evaluatePolicy(sure, facts({ pii: [pii('PERSON', 3, 0.5)] }), subject()).action, 'allow')
  assert.deepEqual(evaluatePolicy(sure, facts({ pii: [pii('PERSON', 1, 0.8)] }), subject()).redact, ['PERSON'])
})

test('GW-4: shadow rules are evaluated and listed with their action, never enforced', () => {
  const doc = policy({
    rules: [
      rule('try-block', { domains: ['medical'] }, 'block', { shadow: true }),
      rule('try-challenge', { domains: ['medical'] }, 'challenge', { shadow: true }),
      rule('live-redact', { pii: {} }, 'redact'),
      rule('try-unmatched', { domains: ['legal'] }, 'block', { shadow: true }),
    ],
  })
  const d = evaluatePolicy(doc, facts({ domain: 'medical', pii: [pii('US_SSN')] }), subject())
  assert.equal(d.action, 'redact')
  assert.equal(d.ruleId, 'live-redact')
  assert.deepEqual(d.shadow, [{ ruleId: 'try-block', action: 'block' }, { ruleId: 'try-challenge', action: 'challenge' }])
  const none = evaluatePolicy(doc, facts({ domain: 'medical' }), subject())
  assert.deepEqual([none.action, none.ruleId], ['allow', null], 'a matching shadow rule is not a match for the default either')
  // A shadow rule whose detector failed is listed with what its failure mode would have done.
  const failed = evaluatePolicy(doc, facts({ errors: ['domain'] }), subject())
  assert.deepEqual(failed.shadow, [{ ruleId: 'try-block', action: 'block' }, { ruleId: 'try-challenge', action: 'block' }, { ruleId: 'try-unmatched', action: 'block' }])
  assert.equal(failed.action, 'allow')
})

test('GW-4: fail-closed by default — a rule whose detector errored blocks; on_error allow and skip change that', () => {
  const make = (onError?: string) => policy({
    default_action: 'challenge',
    rules: [rule('weapons', { safety: { codes: ['S9'] } }, 'challenge', onError ? { on_error: onError } : {})],
  })
  const broken = facts({ errors: ['safety'] })
  const closed = evaluatePolicy(make(), broken, subject())
  assert.deepEqual([closed.action, closed.ruleId, closed.reason, closed.failedDetectors], ['block', 'weapons', 'detector_error', ['safety']])
  assert.deepEqual(evaluatePolicy(make('block'), broken, subject()), closed, 'block is the default')
  const open = evaluatePolicy(make('allow'), broken, subject())
  assert.deepEqual([open.action, open.ruleId, open.reason, open.failedDetectors], ['allow', 'weapons', 'detector_error', ['safety']], 'fail-open: the rule decides allow (and so the default does not apply)')
  const skipped = evaluatePolicy(make('skip'), broken, subject())
  assert.deepEqual([skipped.action, skipped.ruleId, skipped.failedDetectors], ['challenge', null, []], 'skip: as if the rule were not there')
  // A detector that did not fail is not a failure: the rule is evaluated normally.
  assert.deepEqual(evaluatePolicy(make(), facts({ errors: ['pii'] }), subject()).failedDetectors, [])
})

test('GW-4: a failure mode applies only when every condition that does not need the failed detector holds', () => {
  const doc = policy({ rules: [rule('admins-medical', { roles: ['ADMIN'], domains: ['medical'], pii: { kinds: ['US_SSN'] } }, 'redact')] })
  const errs = facts({ errors: ['domain', 'pii'] })
  assert.equal(evaluatePolicy(doc, errs, subject({ role: 'ANALYST' })).action, 'allow', 'wrong role: the rule cannot match, so nothing fails')
  const d = evaluatePolicy(doc, errs, subject({ role: 'ADMIN' }))
  assert.deepEqual([d.action, d.failedDetectors], ['block', ['domain', 'pii']])
  assert.equal(evaluatePolicy(doc, facts({ domain: 'legal', errors: ['pii'] }), subject({ role: 'ADMIN' })).action, 'allow', 'the working domain detector says no')
})

test('GW-4: failedDetectors lists only failures behind the winning action', () => {
  const doc = policy({
    rules: [
      rule('pii-open', { pii: {} }, 'redact', { on_error: 'allow' }),
      rule('weapons', { safety: { codes: ['S9'] } }, 'block'),
    ],
  })
  const d = evaluatePolicy(doc, facts({ errors: ['pii'], safety: [safety('S9')] }), subject())
  assert.deepEqual([d.action, d.ruleId, d.reason, d.failedDetectors], ['block', 'weapons', 'weapons', []])
  const both = evaluatePolicy(policy({ rules: [rule('a', { pii: {} }, 'redact'), rule('b', { intents: ['learn'] }, 'allow')] }), facts({ errors: ['pii', 'intent'] }), subject())
  assert.deepEqual([both.action, both.ruleId, both.failedDetectors], ['block', 'a', ['intent', 'pii']])
})

test('GW-4: roles and cohorts come from the subject; a key with no role matches no roles condition', () => {
  const doc = policy({
    rules: [
      rule('analysts', { roles: ['ANALYST', 'MEMBER'] }, 'challenge'),
      rule('students', { cohorts: ['students', 'interns'] }, 'block'),
    ],
  })
  const table: [Partial<PolicySubject>, string][] = [
    [{ role: 'ANALYST' }, 'challenge'],
    [{ role: 'MEMBER' }, 'challenge'],
    [{ role: 'OWNER' }, 'allow'],
    [{ role: null }, 'allow'],
    [{ role: 'OWNER', cohorts: ['interns'] }, 'block'],
    [{ role: 'ANALYST', cohorts: ['staff', 'students'] }, 'block'],
    [{ role: null, cohorts: ['staff'] }, 'allow'],
  ]
  for (const [s, action] of table) assert.equal(evaluatePolicy(doc, facts(), subject(s)).action, action, JSON.stringify(s))
})

test('GW-4 GW-7: attachment conditions — count, MIME types (with image/*), image labels (which need the image detector)', () => {
  const doc = policy({
    rules: [
      rule('many', { attachments: { min_count: 3 } }, 'challenge'),
      rule('csv', { attachments: { mime_types: ['text/csv'] } }, 'challenge'),
      rule('id-photos', { attachments: { mime_types: ['image/*'], image_labels: ['id_document', 'passport'] } }, 'block'),
    ],
  })
  const att = (count: number, mimeTypes: string[], imageLabels: string[] = []) => facts({ attachments: { count, mimeTypes, imageLabels } })
  const table: [Facts, string, string | null][] = [
    [att(0, []), 'allow', null],
    [att(2, ['text/plain', 'application/json']), 'allow', null],
    [att(3, ['text/plain']), 'challenge', 'many'],
    [att(1, ['text/csv']), 'challenge', 'csv'],
    [att(1, ['image/png'], ['cat']), 'allow', null],
    [att(1, ['image/png'], ['passport']), 'block', 'id-photos'],
    [att(1, ['Image/JPEG'], ['id_document']), 'block', 'id-photos'],
    [att(1, ['text/plain'], ['passport']), 'allow', null],
  ]
  for (const [f, action, ruleId] of table) {
    const d = evaluatePolicy(doc, f, subject())
    assert.deepEqual([d.action, d.ruleId], [action, ruleId], JSON.stringify(f.attachments))
  }
  const broken = evaluatePolicy(doc, facts({ attachments: { count: 1, mimeTypes: ['image/png'], imageLabels: [] }, errors: ['image'] }), subject())
  assert.deepEqual([broken.action, broken.ruleId, broken.failedDetectors], ['block', 'id-photos', ['image']])
  assert.equal(evaluatePolicy(doc, facts({ attachments: { count: 1, mimeTypes: ['text/plain'], imageLabels: [] }, errors: ['image'] }), subject()).action, 'allow', 'no image attached: the image detector is not needed')
})

test('GW-4: domain, intent and prompt-injection conditions', () => {
  const doc = policy({
    rules: [
      rule('med-do', { domains: ['medical', 'legal'], intents: ['do_it'] }, 'challenge'),
      rule('injection', { prompt_injection: true }, 'block'),
    ],
  })
  assert.equal(evaluatePolicy(doc, facts({ domain: 'legal', intent: 'do_it' }), subject()).action, 'challenge')
  assert.equal(evaluatePolicy(doc, facts({ domain: 'legal', intent: 'learn' }), subject()).action, 'allow')
  assert.equal(evaluatePolicy(doc, facts({ promptInjection: true }), subject()).action, 'block')
  assert.deepEqual(evaluatePolicy(doc, facts({ errors: ['injection'] }), subject()).failedDetectors, ['injection'])
})

test('GW-6: prompt filters — per S-code threshold by severity or score, and action', () => {
  const doc = policy({
    filters: {
      prompt: {
        S1: { min_severity: 'medium', action: 'block' },
        S10: { min_score: 0.5, action: 'challenge' },
        S12: { min_severity: 'low', action: 'allow' },
        S13: { min_severity: 'low', action: 'block', shadow: true },
      },
    },
  })
  const table: [Facts['safety'], string, string | null, string | null][] = [
    [[safety('S1', 'low', 0.99)], 'allow', null, null],
    [[safety('S1', 'medium', 0.2)], 'block', 'prompt.S1', 'safety_violent_crimes'],
    [[safety('S1', 'high', 0.2)], 'block', 'prompt.S1', 'safety_violent_crimes'],
    [[safety('S10', 'high', 0.49)], 'allow', null, null],
    [[safety('S10', 'low', 0.5)], 'challenge', 'prompt.S10', 'safety_hate'],
    [[safety('S2', 'high', 1)], 'allow', null, null],
    [[safety('S10', 'low', 0.6), safety('S1', 'high')], 'block', 'prompt.S1', 'safety_violent_crimes'],
    [[safety('S12', 'high')], 'allow', 'prompt.S12', 'safety_sexual_content'],
  ]
  for (const [found, action, ruleId, reason] of table) {
    const d = evaluatePolicy(doc, facts({ safety: found }), subject())
    assert.deepEqual([d.action, d.ruleId, d.reason], [action, ruleId, reason], JSON.stringify(found))
  }
  assert.deepEqual(evaluatePolicy(doc, facts({ safety: [safety('S13')] }), subject()).shadow, [{ ruleId: 'prompt.S13', action: 'block' }])
})

test('GW-6: a prompt filter fails closed when the safety detector errors, unless its on_error says otherwise', () => {
  const broken = facts({ errors: ['safety'] })
  const closed = evaluatePolicy(policy({ filters: { prompt: { S9: { min_severity: 'low', action: 'challenge' } } } }), broken, subject())
  assert.deepEqual([closed.action, closed.ruleId, closed.reason, closed.failedDetectors], ['block', 'prompt.S9', 'detector_error', ['safety']])
  assert.equal(evaluatePolicy(policy({ default_action: 'challenge', filters: { prompt: { S9: { min_severity: 'low', action: 'block', on_error: 'skip' } } } }), broken, subject()).action, 'challenge')
  assert.equal(evaluatePolicy(policy({ default_action: 'challenge', filters: { prompt: { S9: { min_severity: 'low', action: 'block', on_error: 'allow' } } } }), broken, subject()).action, 'allow')
})

test('GW-6: outputs are screened too — evaluateOutput per S-code threshold; the decision says whether to screen', () => {
  const doc = policy({
    filters: { output: { S1: { min_severity: 'high', action: 'block' }, S5: { min_score: 0.8, action: 'allow' }, S12: { min_severity: 'low', action: 'block', shadow: true } } },
  })
  assert.deepEqual(evaluatePolicy(doc, facts(), subject()).output, { screen: true, action: 'block' })
  const table: [Facts['safety'], string, string | null][] = [
    [[], 'allow', null],
    [[safety('S1', 'medium')], 'allow', null],
    [[safety('S1', 'high')], 'block', 'output.S1'],
    [[safety('S5', 'high', 0.9)], 'allow', 'output.S5'],
    [[safety('S5', 'high', 0.9), safety('S1', 'high')], 'block', 'output.S1'],
  ]
  for (const [found, action, ruleId] of table) {
    const o = evaluateOutput(doc, facts({ safety: found }))
    assert.deepEqual([o.action, o.ruleId], [action, ruleId], JSON.stringify(found))
  }
  assert.deepEqual(evaluateOutput(doc, facts({ safety: [safety('S12', 'high')] })).shadow, [{ ruleId: 'output.S12', action: 'block' }])
  assert.equal(evaluateOutput(doc, facts({ safety: [safety('S12', 'high')] })).action, 'allow')
  // The output safety detector failed: output_moderation.on_error decides (block by default).
  assert.deepEqual(evaluateOutput(doc, facts({ errors: ['safety'] })), { action: 'block', ruleId: null, reason: 'detector_error', shadow: [], failedDetectors: ['safety'] })
  const lenient = policy({ filters: { output: { S1: { min_severity: 'high', action: 'block' } } }, output_moderation: { enabled: true, on_error: 'allow' } })
  assert.equal(evaluateOutput(lenient, facts({ errors: ['safety'] })).action, 'allow')
  // Moderation off, or no output filter: nothing to screen.
  const off = policy({ filters: { output: { S1: { min_severity: 'low', action: 'block' } } }, output_moderation: { enabled: false } })
  assert.deepEqual(evaluatePolicy(off, facts(), subject()).output, { screen: false, action: 'allow' })
  assert.equal(evaluateOutput(off, facts({ safety: [safety('S1')] })).action, 'allow')
  assert.deepEqual(evaluatePolicy(policy(), facts(), subject()).output, { screen: false, action: 'allow' })
  assert.deepEqual(evaluatePolicy(policy({ filters: { output: { S5: { min_score: 0.8, action: 'allow' } } } }), facts(), subject()).output, { screen: true, action: 'allow' })
})

test('GW-4: evaluatePolicy is pure — same inputs, same decision; inputs untouched', () => {
  const doc = policy({ rules: [rule('r', { pii: {} }, 'redact'), rule('s', { domains: ['coding'] }, 'block', { shadow: true })], filters: { prompt: { S1: { min_severity: 'low', action: 'challenge' } } } })
  const f = facts({ pii: [pii('EMAIL_ADDRESS')], safety: [safety('S1')], errors: [] })
  const before = JSON.stringify([doc, f])
  const first = evaluatePolicy(doc, f, subject({ role: 'ADMIN', cohorts: ['x'] }))
  for (let i = 0; i < 100; i++) assert.deepEqual(evaluatePolicy(doc, f, subject({ role: 'ADMIN', cohorts: ['x'] })), first)
  assert.equal(JSON.stringify([doc, f]), before)
  assert.ok(Object.isFrozen(doc) && Object.isFrozen(doc.rules[0]!.when), 'a validated document is deep-frozen')
})

test('GW-4 GW-6 GW-7: the default policy — PII redaction on, must-not-miss safety categories blocked (prompts and outputs), no challenges', () => {
  const d = DEFAULT_POLICY
  assert.equal(d.default_action, 'allow')
  const actions = [...d.rules.map((r) => r.action), ...Object.values(d.filters.prompt).map((f) => f!.action), d.default_action]
  assert.ok(!actions.includes('challenge'), 'no challenges')
  assert.ok(d.rules.every((r) => !r.shadow && r.on_error === 'block'), 'every rule enforced and fail-closed')

  const redacted = evaluatePolicy(d, facts({ pii: [pii('EMAIL_ADDRESS'), pii('US_SSN'), pii('MEDICAL_RECORD_NUMBER')] }), subject())
  assert.deepEqual([redacted.action, redacted.redact], ['redact', ['EMAIL_ADDRESS', 'US_SSN', 'MEDICAL_RECORD_NUMBER']])
  assert.equal(evaluatePolicy(d, facts(), subject()).action, 'allow')
  for (const [code, severity] of [['S4', 'medium'], ['S9', 'medium'], ['S3', 'medium'], ['S1', 'high']] as const) {
    assert.equal(evaluatePolicy(d, facts({ safety: [safety(code, severity, 0.1)] }), subject()).action, 'block', `${code} ${severity} blocked`)
    assert.equal(evaluateOutput(d, facts({ safety: [safety(code, severity, 0.1)] })).action, 'block', `${code} ${severity} blocked in outputs`)
  }
  assert.equal(evaluatePolicy(d, facts({ safety: [safety('S1', 'medium')] }), subject()).action, 'allow', 'S1 below high passes')
  // The embedding's low-severity harm hints over-flag hard negatives: recorded, never a block alone.
  assert.equal(evaluatePolicy(d, facts({ safety: [safety('S4', 'low', 0.1)] }), subject()).action, 'allow', 'an S4 low hint alone passes')
  assert.equal(evaluatePolicy(d, facts({ safety: [safety('S11', 'high')] }), subject()).action, 'allow', 'self-harm is not blocked (see default-policy.ts)')
  assert.equal(evaluatePolicy(d, facts({ errors: ['safety'] }), subject()).action, 'block', 'fail-closed when the safety detector errors')
  assert.equal(evaluatePolicy(d, facts({ errors: ['pii'] }), subject()).action, 'block', 'fail-closed when the PII detector errors')
  assert.equal(evaluatePolicy(d, facts({ errors: ['domain', 'intent', 'image', 'injection'] }), subject()).action, 'allow', 'detectors the default does not use do not matter')
  assert.deepEqual(evaluatePolicy(d, facts(), subject()).output, { screen: true, action: 'block' })
})
