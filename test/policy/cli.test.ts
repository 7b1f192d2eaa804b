// `tollgate policy test <file.json>` (GW-4): validates a document and prints one JSON decision
// line per sample line, offline, storing nothing.
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { test, type TestContext } from 'node:test'
import type { Classifier } from '../../src/classify/facts.ts'
import { runCli } from '../../src/cli/index.ts'
import { markerClassifier } from './fixtures.ts'

const DOC = {
  version: 1, default_action: 'allow',
  rules: [
    { id: 'redact-email', when: { pii: { kinds: ['EMAIL_ADDRESS'] } }, action: 'redact', reason: 'pii_redacted' },
    { id: 'analysts', when: { roles: ['ANALYST'], domains: ['medical'] }, action: 'challenge', reason: 'show_reasoning' },
  ],
  filters: { prompt: { S9: { min_severity: 'medium', action: 'block' } } },
}

async function run(t: TestContext, argv: string[], stdin: string, classifier?: Classifier) {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-policy-cli-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'policy.json'), JSON.stringify(DOC))
  writeFileSync(join(dir, 'bad.json'), JSON.stringify({ version: 1, default_action: 'deny', rules: [{ id: 'x', when: { domains: ['cooking'] }, action: 'allow', reason: 'ok' }] }))
  writeFileSync(join(dir, 'samples.jsonl'), '{"facts": {"domain": "legal"}}\n')
  const out: string[] = []
  const err: string[] = []
  const proc = { env: {}, execArgv: [], cwd: dir, stdin: Readable.from([stdin]), ...(classifier ? { classifier } : {}) }
  const code = await runCli(argv, proc, { out: (s) => out.push(s), err: (s) => err.push(s) })
  return { code, out, err, dir }
}

test('GW-4: tollgate policy test prints one stable JSON decision line per sample line (prompts or facts), never the prompt', async (t) => {
  const marker = 'cli-canary-91c'
  const samples = [
    JSON.stringify({ prompt: `${marker} mail me at [email]` }),
    '',
    JSON.stringify({ prompt: `${marker} [weapons]` }),
    JSON.stringify({ facts: { domain: 'medical' }, role: 'ANALYST' }),
    JSON.stringify({ facts: { domain: 'medical' }, role: 'OWNER' }),
    '{not json',
    JSON.stringify({ facts: { domain: 'cooking' } }),
    JSON.stringify({ prompt: 'x', extra: 1 }),
  ].join('\n')
  const r = await run(t, ['policy', 'test', 'policy.json'], samples, markerClassifier())
  assert.equal(r.code, 1, 'malformed lines make the exit status 1')
  const lines = r.out.map((l) => JSON.parse(l))
  assert.deepEqual(lines.map((l) => [l.line, l.decision?.action ?? null, l.decision?.rule_id ?? null]), [
    [1, 'redact', 'redact-email'],
    [3, 'block', 'prompt.S9'],
    [4, 'challenge', 'analysts'],
    [5, 'allow', null],
    [6, null, null],
    [7, null, null],
    [8, null, null],
  ])
  assert.deepEqual(Object.keys(lines[0]), ['line', 'decision', 'facts', 'policy_ms'])
  assert.deepEqual(lines[0].decision, { action: 'redact', rule_id: 'redact-email', reason: 'pii_redacted', redact: ['EMAIL_ADDRESS'], shadow: [], failed_detectors: [], output: { screen: false, action: 'allow' } })
  assert.deepEqual(Object.keys(lines[0].facts), ['domain', 'domain_score', 'intent', 'intent_score', 'safety', 'pii', 'prompt_injection', 'attachments', 'classifier', 'errors'])
  assert.deepEqual(lines[4].problems, [{ path: '$', message: 'is not valid JSON' }])
  assert.deepEqual(lines[5].problems, [{ path: '$.facts.domain', message: 'must be one of: coding, math, writing, science, medical, legal, finance, other' }])
  assert.deepEqual(lines[6].problems, [{ path: '$.extra', message: 'is not a known field (allowed: prompt, facts, role, cohorts)' }])
  assert.ok(!r.out.join('\n').includes(marker) && !r.err.join('\n').includes(marker), 'prompts are never printed')
  assert.deepEqual(readdirSync(r.dir).sort(), ['bad.json', 'policy.json', 'samples.jsonl'], 'nothing was written (no database, no files)')
})

test('GW-4: tollgate policy test — an invalid policy prints every problem with its path and exits 1; --samples reads a file; no classifier, no prompts', async (t) => {
  const bad = await run(t, ['policy', 'test', 'bad.json'], '')
  assert.equal(bad.code, 1)
  assert.deepEqual(bad.err, [
    'bad.json: the policy has 2 problem(s):',
    '  $.default_action: must be one of: allow, challenge, block',
    '  $.rules[0].when.domains[0]: must be one of: coding, math, writing, science, medical, legal, finance, other',
  ])
  assert.deepEqual(bad.out, [])
  const missing = await run(t, ['policy', 'test', 'nope.json'], '')
  assert.deepEqual([missing.code, missing.err], [1, ['nope.json: no such file']])

  const file = await run(t, ['policy', 'test', 'policy.json', '--samples', 'samples.jsonl', '--env', 'production'], '')
  assert.equal(file.code, 0)
  assert.deepEqual(JSON.parse(file.out[0]!).decision.action, 'allow')

  const noClassifier = await run(t, ['policy', 'test', 'policy.json'], '{"prompt": "hello"}\n{"facts": {}}\n')
  assert.equal(noClassifier.code, 1)
  assert.deepEqual(noClassifier.out.map((l) => JSON.parse(l)), [
    { line: 1, problems: [{ path: '$.prompt', message: 'no classifier is available to this command: give facts instead ({"facts": {…}})' }] },
    { ...JSON.parse(noClassifier.out[1]!), line: 2 },
  ])
  assert.equal(JSON.parse(noClassifier.out[1]!).decision.action, 'allow')
  assert.equal((await run(t, ['policy', 'test'], '')).code, 2, 'a missing argument is a usage error')
})
