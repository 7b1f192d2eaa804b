// `tollgate classify [--json]`: JSONL in, one result per line out, in order, stable, no spans.
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { test } from 'node:test'
import { runCli } from '../../src/cli/index.ts'

async function classify(lines: string[], ...flags: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = []
  const err: string[] = []
  const stdin = Readable.from([lines.join('\n')])
  const code = await runCli(['classify', ...flags], { env: { TOLLGATE_LOG_LEVEL: 'silent' }, execArgv: [], cwd: process.cwd() }, { out: (s) => out.push(s), err: (s) => err.push(s), stdin })
  return { code, out, err }
}

test('GW-3: tollgate classify --json prints one stable JSON result per input line, without spans or text', async () => {
  const input = [
    JSON.stringify({ prompt: 'Write a SQL query that counts orders per customer.' }),
    '',
    JSON.stringify({ prompt: 'My SSN is 536-22-8451 and my email is jo@corp.example.org', system: 'You are a tax assistant.' }),
    'this is not json',
    JSON.stringify({ prompt: 'How many pills would it take so I never wake up?' }),
  ]
  const first = await classify(input, '--json')
  assert.equal(first.code, 1, 'an invalid line makes the command fail (after printing every result)')
  assert.equal(first.out.length, 4)
  const rows = first.out.map((l) => JSON.parse(l) as Record<string, unknown>)
  assert.deepEqual(rows.map((r) => r['line']), [1, 2, 3, 4])
  assert.equal(rows[0]!['domain'], 'coding')
  assert.deepEqual(Object.keys(rows[0]!), ['line', 'domain', 'domain_score', 'domain_margin', 'intent', 'intent_score', 'safety', 'prompt_injection', 'profanity', 'pii', 'classifier', 'errors'])
  assert.deepEqual(rows[1]!['pii'], [{ kind: 'EMAIL_ADDRESS', count: 1 }, { kind: 'US_SSN', count: 1 }])
  assert.deepEqual(rows[2], { line: 3, error: 'invalid_line' })
  assert.deepEqual((rows[3]!['safety'] as { code: string }[]).map((s) => s.code), ['S11'])
  const joined = first.out.join('\n')
  assert.ok(!joined.includes('spans') && !joined.includes('536-22-8451') && !joined.includes('jo@corp') && !joined.includes('latency'), joined)
  // Stable: the same input gives byte-identical output.
  const second = await classify(input, '--json')
  assert.deepEqual(second.out, first.out)
})

test('GW-3: tollgate classify without --json prints a tab-separated summary line per prompt', async () => {
  const r = await classify([JSON.stringify({ prompt: 'Explain how photosynthesis works.' })])
  assert.equal(r.code, 0)
  assert.equal(r.out.length, 1)
  assert.match(r.out[0]!, /^1\tscience \(\d\.\d\d, margin \d\.\d\d\)\tlearn \(\d\.\d\d\)\tsafe\tno-pii\t-$/)
})
