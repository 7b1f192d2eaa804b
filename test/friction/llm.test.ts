// GW-5 with the LLM configured (TOLLGATE_CHALLENGE_LLM=on): the question is written by the model
// from the domain and intent only, the reply is graded by its rubric in strict JSON, PII is
// redacted before anything is sent, and any failure falls back to the offline templates/heuristic.
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import { startMockUpstream, UPSTREAM_KEYS } from '../fakes/upstreams.ts'
import { orgWithKeys, promotePolicy, startApp } from '../helpers/app.ts'

const PROMPT = 'Write a Python function that merges two sorted lists; email the result to maria.gonzalez@acme-corp.com.'
const REPLY = 'First I would walk both lists with two pointers because they are sorted, then take the smaller head each step; my colleague jt1987@gmail.com suggested that.'
const QUESTION = 'Before I help: which steps would you take to merge the two lists, and where are you unsure?'

/** A local stand-in for Anthropic that answers the challenge tools; everything else goes to the ordinary mock. */
async function anthropicTools(t: TestContext, forward: string, grade: { score: number; passed: boolean; feedback: string } | 'fail') {
  const seen: any[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', async () => {
      const raw = Buffer.concat(chunks)
      const body = JSON.parse(raw.toString('utf8') || '{}')
      const tool = body?.tool_choice?.name as string | undefined
      if (tool === 'record_question' || tool === 'record_grade') {
        seen.push(body)
        if (req.headers['x-api-key'] !== UPSTREAM_KEYS.anthropic) return res.writeHead(401).end('{}')
        if (tool === 'record_grade' && grade === 'fail') return res.writeHead(529, { 'content-type': 'application/json' }).end('{"type":"error","error":{"type":"overloaded_error","message":"busy"}}')
        const input = tool === 'record_question' ? { question: QUESTION } : grade
        res.writeHead(200, { 'content-type': 'application/json' })
        return res.end(JSON.stringify({ id: 'msg_tool', type: 'message', role: 'assistant', model: body.model, content: [{ type: 'tool_use', id: 'tu_1', name: tool, input }], stop_reason: 'tool_use', usage: { input_tokens: 1, output_tokens: 1 } }))
      }
      const up = await fetch(`${forward}${req.url}`, { method: req.method!, headers: { 'content-type': 'application/json', 'x-api-key': String(req.headers['x-api-key'] ?? ''), 'anthropic-version': '2023-06-01' }, body: raw })
      res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? 'application/json' })
      res.end(Buffer.from(await up.arrayBuffer()))
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => server.close(() => r())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

async function world(t: TestContext, grade: Parameters<typeof anthropicTools>[2], extra: Record<string, string> = {}) {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const tools = await anthropicTools(t, mock.url, grade)
  const tg = (await startApp(t, { env: { ANTHROPIC_API_KEY: UPSTREAM_KEYS.anthropic, ANTHROPIC_BASE_URL: tools.url, TOLLGATE_CHALLENGE_LLM: 'on', ...extra } }))!
  const keys = await orgWithKeys(tg.deps)
  await promotePolicy(tg.deps, keys.org.id, { version: 1, default_action: 'challenge', rules: [] })
  const call = (path: string, body: unknown) => fetch(`${tg.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${keys.production}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { mock, tools, tg, call }
}

test('GW-5: with TOLLGATE_CHALLENGE_LLM=on the LLM writes the question from domain and intent only and grades the reply by its rubric (strict JSON via a forced tool); request and reply reach it PII-redacted; a pass sends the held request upstream once', async (t) => {
  const { mock, tools, call } = await world(t, { score: 0.82, passed: true, feedback: 'ok' })
  const held = (await (await call('/v1/intercept', { model: 'claude-sonnet-4-5', prompt: PROMPT })).json()) as any
  assert.equal(held.decision.challenge.question, QUESTION, 'the LLM’s question is asked')
  const q = tools.seen.find((b) => b.tool_choice.name === 'record_question')
  assert.ok(q, 'the question tool was called')
  const qText = JSON.stringify(q.messages)
  assert.ok(!qText.includes('sorted') && !qText.includes('maria'), 'the question call carries no request text — only domain and intent')
  assert.match(qText, /Subject area: \w+\. Kind of help:/)

  const done = (await (await call(`/v1/intercept/${held.decision.challenge.id}/reply`, { reply: REPLY })).json()) as any
  assert.equal(done.decision.outcome, 'allow')
  assert.equal(done.decision.reasoning_score, 0.82, 'the rubric’s score')
  const g = tools.seen.find((b) => b.tool_choice.name === 'record_grade')
  assert.ok(g, 'the grade tool was called')
  assert.deepEqual(g.tools[0].input_schema.required, ['score', 'passed', 'feedback'])
  const gText = JSON.stringify(g.messages)
  assert.ok(gText.includes('two pointers') && gText.includes('merges two sorted lists'), 'the grader sees the reply and the request')
  assert.ok(!gText.includes('maria.gonzalez@acme-corp.com') && !gText.includes('jt1987@gmail.com'), 'but never their PII')
  assert.ok(gText.includes('[EMAIL_ADDRESS]'))
  const forwarded = mock.received.filter((r) => r.provider === 'anthropic')
  assert.equal(forwarded.length, 1, 'the held request went upstream exactly once')
  assert.ok(JSON.stringify(forwarded[0]!.body).includes('merges two sorted lists'))
})

test('GW-5: the pass mark is Tollgate’s — a rubric score under 0.5 fails even if the model says passed; a failing grader falls back to the offline heuristic, the challenge still works', async (t) => {
  const low = await world(t, { score: 0.3, passed: true, feedback: 'ok' })
  const h1 = (await (await low.call('/v1/intercept', { model: 'claude-sonnet-4-5', prompt: PROMPT })).json()) as any
  const r1 = (await (await low.call(`/v1/intercept/${h1.decision.challenge.id}/reply`, { reply: REPLY })).json()) as any
  assert.equal(r1.decision.outcome, 'challenge')
  assert.equal(r1.decision.challenge.passed, false)
  assert.equal(r1.decision.challenge.reasoning_score, 0.3)
  assert.equal(low.mock.received.length, 0)

  const down = await world(t, 'fail')
  const h2 = (await (await down.call('/v1/intercept', { model: 'claude-sonnet-4-5', prompt: PROMPT })).json()) as any
  const r2 = (await (await down.call(`/v1/intercept/${h2.decision.challenge.id}/reply`, { reply: REPLY })).json()) as any
  assert.equal(r2.decision.outcome, 'allow', 'the offline heuristic graded it')
  assert.ok(down.tools.seen.some((b) => b.tool_choice.name === 'record_grade'), 'the LLM was tried first')
  assert.equal(down.mock.received.length, 1)
})
