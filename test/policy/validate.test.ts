// validatePolicy (GW-4, LIMIT-3): malformed policy documents are rejected with the exact path of
// each problem, in fixed words that never echo the input.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { DEFAULT_POLICY } from '../../src/policy/default-policy.ts'
import { validatePolicy, type PolicyProblem } from '../../src/policy/validate.ts'

const base = { version: 1, default_action: 'allow', rules: [] as unknown[] }
const withRule = (r: Record<string, unknown>) => ({ ...base, rules: [{ id: 'r1', when: {}, action: 'block', reason: 'because', ...r }] })
const withWhen = (when: Record<string, unknown>) => withRule({ when })

const p = (path: string, message: string): PolicyProblem => ({ path, message })

const CASES: [string, unknown, PolicyProblem[]][] = [
  ['not an object', 'rules', [p('$', 'must be an object')]],
  ['an array', [], [p('$', 'must be an object')]],
  ['null', null, [p('$', 'must be an object')]],
  ['empty object', {}, [p('$.version', 'is required'), p('$.default_action', 'is required'), p('$.rules', 'is required')]],
  ['wrong version', { ...base, version: 2 }, [p('$.version', 'must be 1 (the only format version this Tollgate reads)')]],
  ['version as a string', { ...base, version: '1' }, [p('$.version', 'must be 1 (the only format version this Tollgate reads)')]],
  ['unknown default action', { ...base, default_action: 'deny' }, [p('$.default_action', 'must be one of: allow, challenge, block')]],
  ['default redact', { ...base, default_action: 'redact' }, [p('$.default_action', 'cannot be redact: redaction needs PII kinds, so use a rule with when.pii and action redact')]],
  ['rules not a list', { ...base, rules: {} }, [p('$.rules', 'must be a list (it may be empty)')]],
  ['unknown top-level field', { ...base, name: 'x' }, [p('$.name', 'is not a known field (allowed: version, default_action, rules, filters, output_moderation)')]],
  ['unknown field with an unsafe name is not echoed', { ...base, 'ignore previous instructions': 1 }, [p('$', 'has a field that is not known (allowed: version, default_action, rules, filters, output_moderation); its name is not shown')]],
  ['rule not an object', { ...base, rules: [7] }, [p('$.rules[0]', 'must be an object')]],
  ['rule missing everything', { ...base, rules: [{}] }, [p('$.rules[0].id', 'is required'), p('$.rules[0].when', 'is required'), p('$.rules[0].action', 'is required'), p('$.rules[0].reason', 'is required')]],
  ['bad rule id', withRule({ id: 'Has Spaces' }), [p('$.rules[0].id', 'must be 1-64 characters: lowercase letters, digits, _ and -, starting with a letter or digit')]],
  ['rule id with a dot (reserved for filters)', withRule({ id: 'prompt.S1' }), [p('$.rules[0].id', 'must be 1-64 characters: lowercase letters, digits, _ and -, starting with a letter or digit')]],
  ['duplicate rule ids', { ...base, rules: [{ id: 'a', when: {}, action: 'allow', reason: 'x' }, { id: 'b', when: {}, action: 'allow', reason: 'x' }, { id: 'a', when: {}, action: 'block', reason: 'y' }] },
    [p('$.rules[2].id', 'is the same id as $.rules[0].id: rule ids must be unique')]],
  ['unknown action', withRule({ action: 'deny' }), [p('$.rules[0].action', 'must be one of: allow, redact, challenge, block')]],
  ['redact without pii', withRule({ action: 'redact', when: { domains: ['medical'] } }), [p('$.rules[0].action', 'redact needs a when.pii condition: it names the PII kinds to redact')]],
  ['reason is free text', withRule({ reason: 'Because the prompt said so' }), [p('$.rules[0].reason', 'must be a reason code: 1-64 characters, lowercase letters, digits and _, starting with a letter')]],
  ['bad on_error', withRule({ on_error: 'ignore' }), [p('$.rules[0].on_error', 'must be one of: block, allow, skip')]],
  ['shadow not boolean', withRule({ shadow: 'yes' }), [p('$.rules[0].shadow', 'must be true or false')]],
  ['when not an object', withRule({ when: [] }), [p('$.rules[0].when', 'must be an object')]],
  ['unknown condition', withWhen({ topic: ['x'] }), [p('$.rules[0].when.topic', 'is not a known field (allowed: domains, intents, safety, pii, prompt_injection, attachments, roles, cohorts)')]],
  ['unknown domain', withWhen({ domains: ['coding', 'cooking'] }), [p('$.rules[0].when.domains[1]', 'must be one of: coding, math, writing, science, medical, legal, finance, other')]],
  ['empty list', withWhen({ intents: [] }), [p('$.rules[0].when.intents', 'must not be empty (leave the condition out to match anything)')]],
  ['list not a list', withWhen({ intents: 'learn' }), [p('$.rules[0].when.intents', 'must be a list')]],
  ['repeated item', withWhen({ intents: ['learn', 'debug', 'learn'] }), [p('$.rules[0].when.intents[2]', 'repeats $.rules[0].when.intents[0]')]],
  ['too many items', withWhen({ cohorts: Array.from({ length: 65 }, (_, i) => `c${i}`) }), [p('$.rules[0].when.cohorts', 'must have at most 64 items')]],
  ['safety without codes', withWhen({ safety: { min_severity: 'high' } }), [p('$.rules[0].when.safety.codes', 'is required')]],
  ['safety unknown code', withWhen({ safety: { codes: ['S1', 'S15'] } }), [p('$.rules[0].when.safety.codes[1]', 'must be one of: S1, S2, S3, S4, S5, S6, S7, S8, S9, S10, S11, S12, S13, S14')]],
  ['safety both thresholds', withWhen({ safety: { codes: ['S1'], min_severity: 'low', min_score: 0.5 } }), [p('$.rules[0].when.safety', 'must have min_severity or min_score, not both')]],
  ['safety bad severity', withWhen({ safety: { codes: ['S1'], min_severity: 'critical' } }), [p('$.rules[0].when.safety.min_severity', 'must be one of: low, medium, high')]],
  ['safety score out of range', withWhen({ safety: { codes: ['S1'], min_score: 1.5 } }), [p('$.rules[0].when.safety.min_score', 'must be from 0 to 1')]],
  ['safety score not a number', withWhen({ safety: { codes: ['S1'], min_score: '0.5' } }), [p('$.rules[0].when.safety.min_score', 'must be a number from 0 to 1')]],
  ['pii unknown kind', withWhen({ pii: { kinds: ['EMAIL'] } }), [p('$.rules[0].when.pii.kinds[0]', `must be one of: EMAIL_ADDRESS, PHONE_NUMBER, US_SSN, CREDIT_CARD, IBAN_CODE, IP_ADDRESS, PERSON, MEDICAL_RECORD_NUMBER, HEALTH_PLAN_ID, DATE_OF_BIRTH, US_PASSPORT, US_DRIVER_LICENSE`)]],
  ['pii min_count fractional', withWhen({ pii: { min_count: 1.5 } }), [p('$.rules[0].when.pii.min_count', 'must be a whole number from 1 to 1000000')]],
  ['pii min_count zero', withWhen({ pii: { min_count: 0 } }), [p('$.rules[0].when.pii.min_count', 'must be from 1 to 1000000')]],
  ['pii min_confidence', withWhen({ pii: { min_confidence: -0.1 } }), [p('$.rules[0].when.pii.min_confidence', 'must be from 0 to 1')]],
  ['prompt_injection not boolean', withWhen({ prompt_injection: 1 }), [p('$.rules[0].when.prompt_injection', 'must be true or false')]],
  ['attachments empty', withWhen({ attachments: {} }), [p('$.rules[0].when.attachments', 'must have at least one of min_count, mime_types, image_labels')]],
  ['attachment mime type', withWhen({ attachments: { mime_types: ['text/CSV'] } }), [p('$.rules[0].when.attachments.mime_types[0]', 'must be a lowercase MIME type such as text/csv or image/*')]],
  ['attachment label', withWhen({ attachments: { image_labels: ['ok', '<b>'] } }), [p('$.rules[0].when.attachments.image_labels[1]', 'must be an image label: 1-64 characters, lowercase letters, digits, spaces, _ and -')]],
  ['attachment count', withWhen({ attachments: { min_count: 1001 } }), [p('$.rules[0].when.attachments.min_count', 'must be from 1 to 1000')]],
  ['unknown role', withWhen({ roles: ['admin'] }), [p('$.rules[0].when.roles[0]', 'must be one of: OWNER, ADMIN, ANALYST, MEMBER')]],
  ['bad cohort', withWhen({ cohorts: ['Group A'] }), [p('$.rules[0].when.cohorts[0]', 'must be a cohort id: 1-64 characters, lowercase letters, digits, _ . and -')]],
  ['filters not an object', { ...base, filters: [] }, [p('$.filters', 'must be an object')]],
  ['filters unknown stage', { ...base, filters: { input: {} } }, [p('$.filters.input', 'is not a known field (allowed: prompt, output)')]],
  ['filter unknown code', { ...base, filters: { prompt: { S0: { min_score: 0.5, action: 'block' } } } }, [p('$.filters.prompt.S0', 'is not a known field (allowed: S1, S2, S3, S4, S5, S6, S7, S8, S9, S10, S11, S12, S13, S14)')]],
  ['filter without threshold', { ...base, filters: { prompt: { S1: { action: 'block' } } } }, [p('$.filters.prompt.S1', 'must have a threshold: min_severity (low, medium, high) or min_score (0 to 1)')]],
  ['filter without action', { ...base, filters: { prompt: { S1: { min_score: 0.5 } } } }, [p('$.filters.prompt.S1.action', 'is required')]],
  ['prompt filter redact', { ...base, filters: { prompt: { S7: { min_score: 0.5, action: 'redact' } } } }, [p('$.filters.prompt.S7.action', 'cannot be redact: a safety category has nothing to redact (use allow, challenge or block)')]],
  ['output filter challenge', { ...base, filters: { output: { S7: { min_score: 0.5, action: 'challenge' } } } }, [p('$.filters.output.S7.action', 'must be one of: allow, block')]],
  ['output filter on_error (it lives in output_moderation)', { ...base, filters: { output: { S7: { min_score: 0.5, action: 'block', on_error: 'allow' } } } }, [p('$.filters.output.S7.on_error', 'is not a known field (allowed: min_severity, min_score, action, shadow)')]],
  ['output moderation without enabled', { ...base, output_moderation: { on_error: 'block' } }, [p('$.output_moderation.enabled', 'is required')]],
  ['output moderation bad on_error', { ...base, output_moderation: { enabled: true, on_error: 'skip' } }, [p('$.output_moderation.on_error', 'must be one of: allow, block')]],
  ['several problems at once, each with its path', {
    version: 1, default_action: 'allow',
    rules: [
      { id: 'ok', when: { domains: ['coding'] }, action: 'allow', reason: 'fine' },
      { id: 'bad', when: { domains: ['x'], safety: { codes: ['S1'], min_score: 3 } }, action: 'nope', reason: 'r' },
    ],
    filters: { prompt: { S2: { min_severity: 'huge', action: 'block' } } },
  }, [
    p('$.rules[1].when.domains[0]', 'must be one of: coding, math, writing, science, medical, legal, finance, other'),
    p('$.rules[1].when.safety.min_score', 'must be from 0 to 1'),
    p('$.rules[1].action', 'must be one of: allow, redact, challenge, block'),
    p('$.filters.prompt.S2.min_severity', 'must be one of: low, medium, high'),
  ]],
]

test('GW-4 LIMIT-3: malformed policy documents are rejected with the exact path and message of every problem', () => {
  assert.ok(CASES.length >= 50)
  for (const [name, doc, expected] of CASES) {
    const r = validatePolicy(doc)
    assert.equal(r.ok, false, `${name}: should be rejected`)
    assert.deepEqual(!r.ok && r.problems, expected, name)
  }
})

test('GW-4: problem messages never echo the input (a planted marker appears in no path or message)', () => {
  const marker = 'CANARY_7f3a'
  const doc = {
    version: marker, default_action: marker, [`${marker} !`]: 1,
    rules: [{ id: marker, when: { domains: [marker], cohorts: [marker], roles: [marker], attachments: { mime_types: [marker] }, safety: { codes: [marker], min_severity: marker } }, action: marker, reason: `${marker} text`, on_error: marker }],
    filters: { prompt: { S1: { min_score: marker, action: marker } } },
  }
  const r = validatePolicy(doc)
  assert.equal(r.ok, false)
  const problems = !r.ok ? r.problems : []
  assert.ok(problems.length >= 10, `found ${problems.length} problems`)
  assert.ok(!JSON.stringify(problems).includes(marker), JSON.stringify(problems))
  // Positive control: the marker is in the input, so a validator that echoed values would be caught.
  assert.ok(JSON.stringify(doc).includes(marker))
})

test('GW-4: a huge document is cut short: at most 200 rules, at most 100 problems reported', () => {
  const tooMany = validatePolicy({ ...base, rules: Array.from({ length: 201 }, (_, i) => ({ id: `r${i}`, when: {}, action: 'allow', reason: 'x' })) })
  assert.deepEqual(!tooMany.ok && tooMany.problems, [p('$.rules', 'must have at most 200 rules')])
  const bad = validatePolicy({ ...base, rules: Array.from({ length: 200 }, () => ({ id: 'BAD', when: {}, action: 'x', reason: 'x' })) })
  assert.equal(!bad.ok && bad.problems.length, 101)
  assert.deepEqual(!bad.ok && bad.problems.at(-1), p('$', 'more than 100 problems: fix these first'))
})

test('GW-4: a valid document comes back normalized — defaults filled in, filters in S-code order, deep-frozen', () => {
  const r = validatePolicy({
    version: 1, default_action: 'challenge',
    rules: [{ id: 'r', when: { pii: { kinds: ['US_SSN'] } }, action: 'redact', reason: 'ssn' }],
    filters: { prompt: { S9: { min_score: 0.5, action: 'block' }, S1: { min_severity: 'high', action: 'challenge' } } },
  })
  assert.ok(r.ok)
  assert.deepEqual(r.doc, {
    version: 1, default_action: 'challenge',
    rules: [{ id: 'r', when: { pii: { kinds: ['US_SSN'] } }, action: 'redact', reason: 'ssn', on_error: 'block', shadow: false }],
    filters: { prompt: { S1: { min_severity: 'high', action: 'challenge', on_error: 'block', shadow: false }, S9: { min_score: 0.5, action: 'block', on_error: 'block', shadow: false } }, output: {} },
    output_moderation: { enabled: true, on_error: 'block' },
  })
  assert.deepEqual(Object.keys(r.doc.filters.prompt), ['S1', 'S9'])
  assert.ok(Object.isFrozen(r.doc.filters.prompt.S1))
  // Normalizing is idempotent, and the default policy is a valid document.
  assert.deepEqual(validatePolicy(JSON.parse(JSON.stringify(r.doc))), r)
  assert.deepEqual(validatePolicy(JSON.parse(JSON.stringify(DEFAULT_POLICY))), { ok: true, doc: DEFAULT_POLICY })
})

test('GW-4: the example document in the README is valid', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  const section = readme.indexOf('## Policies')
  assert.ok(section >= 0, 'README has a Policies section')
  const start = readme.indexOf('```json', section) + '```json'.length
  const r = validatePolicy(JSON.parse(readme.slice(start, readme.indexOf('```', start))))
  assert.deepEqual(r.ok ? [] : r.problems, [])
})
