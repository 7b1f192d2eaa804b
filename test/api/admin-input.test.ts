import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { startApp, type TestApp } from '../helpers/app.ts'
import { captureLog } from '../helpers/log.ts'
import { VALID, type Ctx, type Valid } from './fixtures.ts'
import { apiRoutes, call, newUser, nobody, person, stateDiff, tableState, type Res } from './world.ts'

/**
 * LIMIT-3 for the admin API: every /api/ route, read from the router, gets malformed JSON, wrong
 * content types, unknown fields, wrong types, out-of-range and oversized values, and bad path and
 * query parameters — driven by the route's own schema — from a signed-in OWNER with a fresh
 * step-up and a valid CSRF token, against live fixtures. Each answer is a 4xx (400 with the
 * field's path for validation, 415, 413), nothing stored changes, and no planted marker comes back
 * in a response or reaches the log. Afterwards the valid form of every request succeeds, so the
 * fixtures were live and the bad input was the only reason for the refusals.
 */

const BODY_LIMIT = 16_384
/** WebAuthn responses are the browser's shape, not ours: these bodies are free-form objects judged by the verifier. */
const FREE_FORM = new Set(['POST /api/me/passkeys', 'POST /api/me/step-up'])

interface Case {
  readonly what: string
  readonly path?: string
  readonly body?: string
  readonly contentType?: string | null
  /** Expected status and, for validation, the param the answer must name (a prefix). */
  readonly status: number
  readonly code: string
  readonly param?: string
}

type Schema = { type?: string | string[]; properties?: Record<string, Schema>; maxLength?: number; minLength?: number; maximum?: number; minimum?: number; maxItems?: number; minItems?: number; pattern?: string; enum?: unknown[]; items?: Schema; additionalProperties?: boolean }

/** A value of the wrong JSON type for `s`, carrying the marker where it can. */
function wrongType(s: Schema, mark: string): unknown {
  const types = Array.isArray(s.type) ? s.type : [s.type]
  return types.includes('string') ? { [mark]: mark } : [mark]
}

/** Schema-driven mutations of one body field: each must be refused with 400 naming `body.<field>`. */
function fieldCases(name: string, s: Schema, valid: Record<string, unknown>, mark: string): Array<{ what: string; body: Record<string, unknown> }> {
  const out: Array<{ what: string; body: Record<string, unknown> }> = []
  const put = (what: string, v: unknown) => out.push({ what: `${name}: ${what}`, body: { ...valid, [name]: v } })
  put('wrong type', wrongType(s, mark))
  // null is a wrong value unless the field is nullable (e.g. classifier_llm: null = the instance setting).
  if (!(Array.isArray(s.type) ? s.type : [s.type]).includes('null')) put('null', null)
  if (s.maxLength !== undefined) put(`longer than ${s.maxLength}`, (mark + 'x'.repeat(s.maxLength)).slice(0, s.maxLength + 1))
  if (s.minLength !== undefined && s.minLength > 0) put(`shorter than ${s.minLength}`, '')
  if (s.pattern !== undefined) put('off-pattern', `${mark}<>\n`)
  if (s.enum !== undefined) put('not in the enum', mark)
  if (s.maximum !== undefined) put(`above ${s.maximum}`, s.maximum + 1)
  if (s.minimum !== undefined) put(`below ${s.minimum}`, s.minimum - 1)
  if ((Array.isArray(s.type) ? s.type : [s.type]).includes('integer')) put('fractional', 1.5)
  if (s.maxItems !== undefined) put(`more than ${s.maxItems} items`, Array.from({ length: s.maxItems + 1 }, () => (valid[name] as unknown[] | undefined)?.[0] ?? mark))
  if (s.minItems !== undefined && s.minItems > 0) put(`fewer than ${s.minItems} items`, [])
  if (s.items?.pattern !== undefined || s.items?.type === 'string') put('an item off-pattern', [`${mark}<>`])
  return out
}

test('LIMIT-3: every admin route refuses malformed JSON, wrong content types, unknown fields, wrong types and oversized values with a 4xx, changes nothing and echoes nothing', async (t) => {
  const log = captureLog()
  const tg = await startApp(t, { log: log.logger, env: { TOLLGATE_BODY_LIMIT_BYTES: String(BODY_LIMIT) } })
  if (!tg) return
  const mark = `MK${randomBytes(6).toString('hex')}Q`
  const orgId = (await tg.deps.orgs.create('input-org', { type: 'operator', id: null }))!.id
  const spareOrg = (await tg.deps.orgs.create('input-spare', { type: 'operator', id: null }))!.id
  const owner = await person(tg, orgId, 'OWNER')
  const c: Ctx = { tg, owner, orgId, spareOrg }
  const openapi = tg.app.swagger() as { paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: Schema }> }; parameters?: Array<{ in: string; name: string; schema: Schema }> }>> }

  const routes = apiRoutes(tg.app.printRoutes({ commonPrefix: false })).filter((r) => !r.startsWith('HEAD '))
  const changing = routes.filter((r) => !r.startsWith('GET '))
  assert.deepEqual(changing.filter((r) => !(r in VALID)), [], 'state-changing routes without a valid fixture in admin-input.test.ts')

  // Fixtures first, then the snapshot: every refusal below must leave every row as it was.
  const valid = new Map<string, Valid>()
  for (const r of changing) valid.set(r, await VALID[r]!(c))
  const before = await tableState(tg)
  const auditBefore = await tg.deps.db.db.selectFrom('audit_event').select(['chain_id', 'seq']).execute()

  const failures: string[] = []
  const responses: string[] = []
  let sent = 0
  const send = async (route: string, path: string, x: Case): Promise<void> => {
    const [method] = route.split(' ') as [string]
    const res: Res = await call(tg, owner, method, x.path ?? path, undefined, x.body === undefined ? {} : { raw: x.body, contentType: x.contentType === undefined ? 'application/json' : x.contentType })
    sent++
    responses.push(res.text, JSON.stringify([...res.headers]))
    const label = `${route} — ${x.what}`
    if (res.status !== x.status || res.json?.error?.code !== x.code) failures.push(`${label}: expected ${x.status} ${x.code}, got ${res.status} ${res.text.slice(0, 200)}`)
    else if (x.param !== undefined && !(typeof res.json.error.param === 'string' && res.json.error.param.startsWith(x.param))) failures.push(`${label}: expected param ${x.param}, got ${res.json.error.param}`)
  }
  const pathOf = (template: string, params: Record<string, string>) => template.replace(':org', orgId).replace(/:([a-z]+)/g, (_, n: string) => encodeURIComponent(params[n]!))

  for (const route of routes) {
    const [method, template] = route.split(' ') as [string, string]
    const v = valid.get(route) ?? { params: {} }
    const path = pathOf(template, v.params)
    const op = openapi.paths[template.replace(/:(\w+)/g, '{$1}')]?.[method.toLowerCase()]

    // Path parameters of the wrong shape (and a marker in them).
    for (const p of op?.parameters?.filter((x) => x.in === 'path') ?? []) {
      const bad = p.schema.maxLength !== undefined ? mark + 'x'.repeat(p.schema.maxLength) : `${mark}<script>`
      const badPath = template.replace(/:([a-z]+)/g, (_, n: string) => encodeURIComponent(n === p.name ? bad : n === 'org' ? orgId : v.params[n] ?? nobody()))
      // (Over the router's length limit the router itself refuses it: then the param is just `params`.)
      // A malformed org id is an org the caller is not a member of: the guard answers the same
      // 404 as for any other org (DATA-3) before the schema is consulted.
      await send(route, path, p.name === 'org'
        ? { what: `params.${p.name} malformed`, path: badPath, status: 404, code: 'not_found' }
        : { what: `params.${p.name} malformed`, path: badPath, status: 400, code: 'invalid_request', param: 'params' })
      const undecodable = template.replace(/:([a-z]+)/g, (_, n: string) => (n === p.name ? `${mark}%zz` : encodeURIComponent(n === 'org' ? orgId : v.params[n] ?? nobody())))
      await send(route, path, { what: `params.${p.name} not decodable`, path: undecodable, status: 400, code: 'invalid_request', param: 'params' })
    }
    // Query strings: unknown names, values outside the enum or pattern.
    const query = op?.parameters?.filter((x) => x.in === 'query') ?? []
    if (query.length > 0) {
      await send(route, path, { what: 'unknown query parameter', path: `${path}?${mark}=${mark}`, status: 400, code: 'invalid_request', param: 'querystring' })
      for (const q of query) await send(route, path, { what: `querystring.${q.name} invalid`, path: `${path}?${q.name}=${mark}%3C`, status: 400, code: 'invalid_request', param: `querystring.${q.name}` })
    }
    if (method === 'GET') continue

    const json = (b: unknown) => JSON.stringify(b)
    const body = v.body ?? {}
    // The framework's own refusals, for every body-taking method (DELETE included: a body it cannot read is refused).
    await send(route, path, { what: 'malformed JSON', body: `{"${mark}": "${mark}"`, status: 400, code: 'invalid_json' })
    await send(route, path, { what: 'empty JSON body', body: '', status: 400, code: 'invalid_json' })
    for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/octet-stream']) {
      await send(route, path, { what: `content-type ${ct}`, body: ct.startsWith('application/x-www') ? `${mark}=${mark}` : json(body).replace('}', `,"m":"${mark}"}`), contentType: ct, status: 415, code: 'unsupported_media_type' })
    }
    await send(route, path, { what: `body over ${BODY_LIMIT} bytes`, body: json({ ...body, pad: mark.repeat(Math.ceil(BODY_LIMIT / mark.length) + 1) }), status: 413, code: 'payload_too_large' })
    if (method === 'DELETE') continue

    // Schema validation, driven by the route's own request schema.
    const schema = op?.requestBody?.content['application/json']?.schema
    assert.ok(schema, `${route} takes a body but documents no schema`)
    if (FREE_FORM.has(route)) {
      // The WebAuthn verifier judges these; the schema still insists on an object.
      for (const [what, raw] of [['an array', `["${mark}"]`], ['a string', `"${mark}"`], ['a number', '42'], ['null', 'null']] as const) {
        await send(route, path, { what: `body is ${what}`, body: raw, status: 400, code: 'invalid_request', param: 'body' })
      }
      continue
    }
    for (const [what, raw] of [['an array', `["${mark}"]`], ['a string', `"${mark}"`], ['a number', '42'], ['null', 'null']] as const) {
      await send(route, path, { what: `body is ${what}`, body: raw, status: 400, code: 'invalid_request', param: 'body' })
    }
    await send(route, path, { what: 'unknown field', body: json({ ...body, [`x-${mark}`]: mark }), status: 400, code: 'invalid_request', param: 'body' })
    await send(route, path, { what: 'unknown field (identifier-shaped)', body: json({ ...body, [mark]: mark }), status: 400, code: 'invalid_request', param: 'body' })
    for (const [name, s] of Object.entries(schema.properties ?? {})) {
      for (const f of fieldCases(name, s, body, mark)) await send(route, path, { what: f.what, body: json(f.body), status: 400, code: 'invalid_request', param: `body.${name}` })
      if (name in body && (schema as { required?: string[] }).required?.includes(name)) {
        const { [name]: _, ...rest } = body
        await send(route, path, { what: `${name} missing`, body: json(rest), status: 400, code: 'invalid_request', param: `body.${name}` })
      }
    }
  }

  assert.deepEqual(failures, [], `${failures.length} of ${sent} bad requests were not refused as expected`)
  assert.ok(sent > 300, `${sent} bad requests`)

  // Nothing changed: every row of every table, the audit log included (no access was denied here).
  const after = await tableState(tg)
  assert.deepEqual(stateDiff(before, after), [], 'a refused request changed stored data')
  assert.equal((await tg.deps.db.db.selectFrom('audit_event').select('seq').execute()).length, auditBefore.length)

  // Nothing echoed: the marker is in no response (body or header) and in no log line.
  assert.deepEqual(responses.filter((r) => r.includes(mark)).slice(0, 3), [], 'a response echoed the input')
  assert.ok(!log.text().includes(mark), 'the log holds request input')
  // Positive control for the scan: a member whose address carries the marker is found in a list response.
  await newUser(tg, orgId, 'MEMBER', `${mark.toLowerCase()}@example.com`)
  assert.ok((await call(tg, owner, 'GET', `/api/orgs/${orgId}/members`)).text.includes(mark.toLowerCase()), 'the scan finds a planted marker')

  // Positive control for the fixtures: the valid form of each request is accepted (promotion
  // first: activating another draft would take the active sandbox slot it needs).
  for (const route of [...changing].sort((x, y) => Number(y.endsWith('/promote')) - Number(x.endsWith('/promote')))) {
    const v = valid.get(route)!
    if (v.ok === undefined) continue
    const [method, template] = route.split(' ') as [string, string]
    const r = await call(tg, owner, method, pathOf(template, v.params), v.body)
    assert.equal(r.status, v.ok, `${route} (valid): ${r.text}`)
  }
})
