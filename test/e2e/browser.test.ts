import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { chromium, type BrowserContext, type Page, type Response } from 'playwright-core'
import { SESSION_COOKIE } from '../../src/api/guard.ts'
import { bootstrapOrg } from '../../src/identity/bootstrap.ts'
import { FLOW_COOKIE } from '../../src/identity/routes.ts'
import { ManualClock } from '../fakes/clock.ts'
import { startApp, type TestApp } from '../helpers/app.ts'
import { CHROMIUM, needService } from '../helpers/services.ts'
import { autoSubmitForm, fetchAttacks, startAttackerSite, type AttackerSite, type FormEncoding } from './attacker-site.ts'

/**
 * The dashboard in real Chromium (AUTH-5, AUTH-6, AUTH-7; security-tests T44, T53): the bootstrap
 * link, the session cookie as the browser stores it, cross-site and same-site forgery attempts
 * from a second local server, framing, the dashboard's headers, and passkeys on Chromium's
 * virtual authenticator (register, passwordless sign-in, step-up, replay).
 *
 * The app runs on plain http://localhost: Chromium treats localhost as a secure context, so it
 * stores `Secure` and `__Host-` cookies there and offers WebAuthn (RP id `localhost`).
 * `evil.test` is mapped to 127.0.0.1 with --host-resolver-rules: another site. The attacker's
 * server is also reached as http://localhost:<its port>: the same site as the app, another origin.
 */

const SEC = 1000
const MIN = 60 * SEC
const DAY = 24 * 60 * MIN

const ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP evil.test 127.0.0.1',
]

async function statusOf(tg: TestApp, token: string): Promise<number> {
  const res = await fetch(`${tg.url}/api/me`, { headers: { cookie: `${SESSION_COOKIE}=${token}` } })
  await res.arrayBuffer()
  return res.status
}

async function sessionToken(context: BrowserContext, origin: string): Promise<string | undefined> {
  return (await context.cookies(origin)).find((c) => c.name === SESSION_COOKIE)?.value
}

/** Calls the admin API from inside the dashboard page, as app.js does (CSRF token from /api/me). */
async function apiFromPage(page: Page, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  return page.evaluate(async ({ method, path, body }) => {
    const me = await fetch('/api/me', { credentials: 'same-origin' })
    const csrf = me.ok ? ((await me.json()) as { csrf_token?: string }).csrf_token : undefined
    const headers: Record<string, string> = { accept: 'application/json' }
    if (body !== undefined) headers['content-type'] = 'application/json'
    if (csrf && method !== 'GET') headers['x-csrf-token'] = csrf
    const res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) })
    const text = await res.text()
    return { status: res.status, json: text ? JSON.parse(text) : null }
  }, { method, path, body })
}

/** The state an attack could change: keys, invites, live sessions, used links, members, and non-denial audit entries. */
async function snapshot(tg: TestApp) {
  const db = tg.deps.db.db
  const count = async (q: Promise<{ n: number | string | bigint }[]>) => Number((await q)[0]!.n)
  return {
    keys: await count(db.selectFrom('api_key').select((eb) => eb.fn.countAll<number>().as('n')).execute()),
    invites: await count(db.selectFrom('invite').select((eb) => eb.fn.countAll<number>().as('n')).execute()),
    liveSessions: await count(db.selectFrom('session').where('ended_at', 'is', null).select((eb) => eb.fn.countAll<number>().as('n')).execute()),
    sessions: await count(db.selectFrom('session').select((eb) => eb.fn.countAll<number>().as('n')).execute()),
    usedLinks: await count(db.selectFrom('login_link').where('used_at', 'is not', null).select((eb) => eb.fn.countAll<number>().as('n')).execute()),
    roles: (await db.selectFrom('membership').select(['user_id', 'role']).orderBy('user_id').execute()).map((r) => `${r.user_id}:${r.role}`).join(','),
    passkeys: await count(db.selectFrom('passkey').select((eb) => eb.fn.countAll<number>().as('n')).execute()),
    audit: (await db.selectFrom('audit_event').select(['chain_id', 'seq', 'action', 'outcome']).orderBy('chain_id').orderBy('seq').execute()),
  }
}

/** The attacker's page navigates away at once (that is the attack): goto may report it as interrupted. */
function interrupted(err: unknown): void {
  if (!/interrupted by another navigation|ERR_ABORTED/.test(String((err as Error)?.message))) throw err
}

async function withPage<T>(context: BrowserContext, fn: (page: Page) => Promise<T>): Promise<T> {
  const page = await context.newPage()
  try {
    return await fn(page)
  } finally {
    await page.close()
  }
}

test('AUTH-5 AUTH-6 AUTH-7 T44 T53: the dashboard in real Chromium — bootstrap link, cookie, forgery from other sites, framing, headers, passkeys and step-up', async (t: TestContext) => {
  if (!(await needService(t, 'chromium'))) return
  const clock = new ManualClock()
  const tg = await startApp(t, { clock })
  assert.ok(tg)
  const d = tg.deps
  const origin = d.origin
  const made = await bootstrapOrg({ ...d, db: d.db.db }, 'acme', 'owner@acme.example', { type: 'system', id: null })
  assert.ok(made)
  const { orgId, userId: ownerId } = made
  const attacker: AttackerSite = await startAttackerSite()
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 60_000 }).catch(async (err: unknown) => {
    await attacker.close()
    throw err
  })
  // Closed before the app's own teardown: an open browser keeps connections to the app alive.
  try {
    const context = await browser.newContext()
    context.setDefaultTimeout(20_000)
    const page = await context.newPage()

    await t.test('AUTH-7: the single-use bootstrap link signs the owner in; its token never leaves the fragment; a second use fails', async () => {
      const linkToken = new URL(made.link).hash.slice('#token='.length)
      assert.match(made.link, new RegExp(`^${origin}/auth/link#token=[A-Za-z0-9_-]{43}$`))
      const urls: string[] = []
      page.on('request', (r) => urls.push(r.url()))
      const signIn = page.waitForResponse((r) => r.url() === `${origin}/auth/link` && r.request().method() === 'POST')
      await page.goto(made.link)
      const res = await signIn
      assert.equal(res.status(), 200)
      await page.waitForURL(`${origin}/`)
      await page.locator('#who button', { hasText: 'Sign out' }).waitFor()
      assert.match((await page.locator('#who').textContent()) ?? '', /owner@acme\.example/)
      assert.ok(urls.length > 3)
      assert.deepEqual(urls.filter((u) => u.includes(linkToken)), [], 'the link token is in no URL a request was made for (fragments are never sent)')
      const setCookie = (await res.headerValue('set-cookie')) ?? ''
      assert.match(setCookie, new RegExp(`^${SESSION_COOKIE}=[A-Za-z0-9_-]{43};`))
      assert.doesNotMatch(setCookie, /domain=/i, 'no Domain attribute')
      const session = await d.db.db.selectFrom('session').selectAll().where('user_id', '=', ownerId).executeTakeFirstOrThrow()
      assert.equal(session.kind, 'bootstrap')

      // The link works once.
      const other = await browser.newContext()
      try {
        const p2 = await other.newPage()
        const again = p2.waitForResponse((r) => r.url() === `${origin}/auth/link` && r.request().method() === 'POST')
        await p2.goto(made.link)
        assert.equal((await again).status(), 401)
        await p2.locator('text=Links work once').waitFor()
        assert.equal(await sessionToken(other, origin), undefined)
      } finally {
        await other.close()
      }
    })

    await t.test('AUTH-5 T53: the session cookie as Chromium stores it: __Host-, HttpOnly, Secure, SameSite=Lax, Path=/, host-only, ≤ 30 days, invisible to scripts', async () => {
      const cookies = await context.cookies(origin)
      const c = cookies.find((x) => x.name === SESSION_COOKIE)
      assert.ok(c, `cookies: ${cookies.map((x) => x.name).join(', ')}`)
      assert.ok(c.name.startsWith('__Host-'))
      assert.equal(c.httpOnly, true)
      assert.equal(c.secure, true)
      assert.equal(c.sameSite, 'Lax')
      assert.equal(c.path, '/')
      assert.equal(c.domain, 'localhost', 'host-only (no Domain attribute: no leading dot)')
      const lifetime = c.expires - Date.now() / 1000
      assert.ok(lifetime > 29 * DAY / 1000 && lifetime <= 30 * DAY / 1000 + 60, `expires in ${lifetime} s: at most the 30-day class cap`)
      assert.equal(Buffer.from(c.value, 'base64url').length, 32)
      const visible = (await page.evaluate('document.cookie')) as string
      assert.doesNotMatch(visible, /tollgate/, 'document.cookie does not show the session cookie')
    })

    await t.test('T53: the dashboard\'s headers — CSP with object-src/base-uri/frame-ancestors \'none\', X-Frame-Options, nosniff, no-store, Referrer-Policy', async () => {
      for (const path of ['/', '/auth/link', '/invite']) {
        const res = await page.goto(`${origin}${path}`)
        assert.ok(res)
        const h = await res.allHeaders()
        const csp = h['content-security-policy'] ?? ''
        for (const directive of ["object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "script-src 'self'", "default-src 'self'"]) assert.ok(csp.includes(directive), `${path}: CSP has ${directive}`)
        assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/, `${path}: CSP allows no inline script, eval or wildcard`)
        assert.equal(h['x-frame-options'], 'DENY')
        assert.equal(h['x-content-type-options'], 'nosniff')
        assert.match(h['cache-control'] ?? '', /no-store/)
        assert.ok(h['referrer-policy'], 'a Referrer-Policy')
        assert.match(h['content-type'] ?? '', /^text\/html; charset=utf-8/)
      }
      const api = await fetch(`${tg.url}/api/me`, { headers: { cookie: `${SESSION_COOKIE}=${await sessionToken(context, origin)}` } })
      assert.equal(api.status, 200)
      assert.match(api.headers.get('cache-control') ?? '', /no-store/, 'authenticated API answers are not cached')
      assert.equal(api.headers.get('x-content-type-options'), 'nosniff')
      await page.goto(`${origin}/`)
      await page.locator('#who button', { hasText: 'Sign out' }).waitFor()
    })

    // A second person in the org, with a live session, whose sessions an attack might try to end.
    const memberUser = await d.users.create(d.db.db, 'member@acme.example')
    await d.members.add(d.db.db, orgId, memberUser.id, 'MEMBER')
    const memberSession = await d.sessions.create(memberUser.id, 'bootstrap', null)
    // The attacker's own account and a valid sign-in link for it (login CSRF).
    const mallory = await d.users.create(d.db.db, 'mallory@evil.example')
    const malloryLink = await d.links.create(d.db.db, mallory.id)

    await t.test('AUTH-5 T53: forms, fetch (no-cors, credentials included), navigations and image loads from another site and from a same-site origin change nothing; login CSRF creates no session', async () => {
      const ownerToken = await sessionToken(context, origin)
      assert.ok(ownerToken)
      // The owner is freshly signed in: without forgery protection every one of these would succeed.
      const targets: { url: string; fields: Record<string, string>; json: string }[] = [
        { url: `${origin}/api/orgs/${orgId}/keys`, fields: { environment: 'sandbox' }, json: '{"environment":"sandbox"}' },
        { url: `${origin}/api/me/sessions/end-others`, fields: {}, json: '{}' },
        { url: `${origin}/api/orgs/${orgId}/members/${memberUser.id}/end-sessions`, fields: {}, json: '{}' },
        { url: `${origin}/api/orgs/${orgId}/invites`, fields: { email: 'x@evil.example', role: 'OWNER' }, json: '{"email":"x@evil.example","role":"OWNER"}' },
        { url: `${origin}/auth/sign-out`, fields: {}, json: '{}' },
        { url: `${origin}/auth/link`, fields: { token: malloryLink }, json: JSON.stringify({ token: malloryLink }) },
      ]
      const before = await snapshot(tg)
      const seen: { url: string; method: string; status: number; site: string }[] = []
      const record = (site: string) => (r: Response) => {
        if (r.url().startsWith(origin)) seen.push({ url: r.url(), method: r.request().method(), status: r.status(), site })
      }

      const sites = [
        { name: 'cross-site evil.test', base: `http://evil.test:${attacker.port}` },
        { name: 'same-site localhost:<other port>', base: `http://localhost:${attacker.port}` },
      ]
      // One attacker tab, reused: every form below is a top-level POST navigation (the case in
      // which SameSite=Lax is weakest).
      const tab = await context.newPage()
      for (const site of sites) {
        const prefix = site.base.includes('evil') ? '/x' : '/s'
        tab.removeAllListeners('response')
        tab.on('response', record(site.name))
        // (a) auto-submitting top-level POST forms in three encodings.
        for (const [i, target] of targets.entries()) {
          for (const enctype of ['application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain'] as FormEncoding[]) {
            // text/plain smuggles a JSON body: name `{"environment":"sandbox","label":"` + value `x"}`.
            const fields = enctype === 'text/plain' ? { [target.json.slice(0, -1) + (target.json === '{}' ? '"a":"' : ',"label":"')]: 'x"}' } : target.fields
            const path = `${prefix}/form/${i}/${enctype.replace('/', '-')}`
            attacker.page(path, autoSubmitForm(target.url, enctype, fields))
            const answered = tab.waitForResponse((r) => r.url() === target.url && r.request().method() === 'POST')
            await tab.goto(`${site.base}${path}`).catch(interrupted)
            await answered
          }
        }
        // (b) fetch with credentials: 'include' — no-cors with every body a page can send without a
        // preflight, and a cors JSON request (its preflight gets no CORS approval).
        const calls = targets.flatMap((target) => [
          { url: target.url, init: `{ method: 'POST', mode: 'no-cors', credentials: 'include' }` },
          { url: target.url, init: `{ method: 'POST', mode: 'no-cors', credentials: 'include', body: ${JSON.stringify(target.json)} }` },
          { url: target.url, init: `{ method: 'POST', mode: 'no-cors', credentials: 'include', body: new URLSearchParams(${JSON.stringify(target.fields)}) }` },
          { url: target.url, init: `{ method: 'POST', mode: 'no-cors', credentials: 'include', body: (() => { const f = new FormData(); for (const [k, v] of Object.entries(${JSON.stringify(target.fields)})) f.append(k, v); return f })() }` },
          { url: target.url, init: `{ method: 'POST', mode: 'no-cors', credentials: 'include', body: new Blob([${JSON.stringify(target.json)}]) }` },
          { url: target.url, init: `{ method: 'POST', mode: 'cors', credentials: 'include', headers: { 'content-type': 'application/json' }, body: ${JSON.stringify(target.json)} }` },
        ])
        attacker.page(`${prefix}/fetch`, fetchAttacks(calls))
        await tab.goto(`${site.base}${prefix}/fetch`)
        await tab.waitForFunction("document.title === 'done'", undefined, { timeout: 30_000 })
        const results = (await tab.evaluate('window.results')) as string[]
        assert.equal(results.length, calls.length)
        assert.ok(results.every((r) => r === 'opaque' || r === 'TypeError'), `no readable answer: ${results.join(',')}`)
        // (c) <img>/<script> loads and top-level GET navigations to the same URLs.
        attacker.page(`${prefix}/img`, `<!doctype html><title>loading</title>${targets.map((x) => `<img src="${x.url}"><script src="${x.url}"></script>`).join('')}<script>window.onload = () => { document.title = 'done' }</script>`)
        await tab.goto(`${site.base}${prefix}/img`)
        await tab.waitForFunction("document.title === 'done'", undefined, { timeout: 30_000 })
        for (const target of targets) {
          attacker.page(`${prefix}/nav`, `<!doctype html><script>location.href = ${JSON.stringify(target.url)}</script>`)
          const answered = tab.waitForResponse((r) => r.url() === target.url)
          await tab.goto(`${site.base}${prefix}/nav`).catch(interrupted)
          await answered
        }
      }
      await tab.close()

      const posts = seen.filter((s) => s.method === 'POST')
      assert.ok(posts.length >= targets.length * 3 * 2, `the forms reached the app (${posts.length} POSTs seen)`)
      t.diagnostic(`forged requests seen: ${seen.length} (POST ${posts.length}); statuses ${JSON.stringify(Object.fromEntries([...new Set(seen.map((s) => `${s.method} ${s.status}`))].map((k) => [k, seen.filter((s) => `${s.method} ${s.status}` === k).length])))}`)
      // Every state-changing request was refused. (A GET only reads: a navigation to a JSON listing
      // shows it to the victim, never to the attacker's page.)
      const allowed = seen.filter((s) => s.method !== 'GET' && s.status < 400)
      assert.deepEqual(allowed, [], 'every forged state-changing request was refused')

      // 0 state changes, in the database and the audit log.
      const after = await snapshot(tg)
      const { audit: auditBefore, ...stateBefore } = before
      const { audit: auditAfter, ...stateAfter } = after
      assert.deepEqual(stateAfter, stateBefore, 'keys, invites, sessions, links, roles and passkeys unchanged')
      const seenBefore = new Set(auditBefore.map((e) => `${e.chain_id}#${e.seq}`))
      const newAudit = auditAfter.filter((e) => !seenBefore.has(`${e.chain_id}#${e.seq}`))
      assert.deepEqual(newAudit.filter((e) => e.outcome !== 'denied' && e.outcome !== 'failure'), [], `no successful audited action: ${JSON.stringify(newAudit)}`)
      const malloryLinkRow = await d.db.db.selectFrom('login_link').select('used_at').where('user_id', '=', mallory.id).executeTakeFirstOrThrow()
      assert.equal(malloryLinkRow.used_at, null, 'login CSRF: the attacker\'s link was not consumed')
      assert.equal(await sessionToken(context, origin), ownerToken, 'the victim is still signed in as themself')
      assert.equal(await statusOf(tg, ownerToken), 200)
      assert.equal(await statusOf(tg, memberSession.token), 200)

      // Requests that carried the session (same-site) and reached the guard are audited as forgery.
      const csrfAudits = newAudit.filter((e) => e.action === 'malicious_csrf')
      const sameSitePostsToApi = posts.filter((s) => s.site.startsWith('same-site') && s.url.includes('/api/') && s.status === 403)
      t.diagnostic(`malicious_csrf audits: ${csrfAudits.length}; same-site API POSTs refused 403: ${sameSitePostsToApi.length}`)
      assert.ok(sameSitePostsToApi.length > 0, 'same-site forged API requests reached the guard')
      assert.equal(csrfAudits.length, sameSitePostsToApi.length, 'each forged API request the guard refused is audited as malicious_csrf')
    })

    await t.test('T53: the dashboard cannot be framed by another site or another origin of the same site', async () => {
      attacker.page('/framable', '<!doctype html><title>inner</title><p id="inner">attacker content</p>')
      for (const base of [`http://evil.test:${attacker.port}`, `http://localhost:${attacker.port}`]) {
        attacker.page('/frame', `<!doctype html><title>outer</title><iframe id="control" src="${base}/framable"></iframe><iframe id="victim" src="${origin}/"></iframe>`)
        await withPage(context, async (p) => {
          const dashboardAnswered = p.waitForResponse((r) => r.url() === `${origin}/`)
          await p.goto(`${base}/frame`)
          await dashboardAnswered
          await p.waitForLoadState('load')
          const control = p.frames().find((f) => f.url() === `${base}/framable`)
          assert.ok(control, 'control: a framable page does load in the frame')
          assert.equal(await control.locator('#inner').count(), 1)
          const victim = p.frames().find((f) => f !== p.mainFrame() && f !== control)
          assert.ok(victim)
          assert.notEqual(victim.url(), `${origin}/`, `the dashboard frame was blocked (frame url ${victim.url()})`)
          assert.equal(await victim.locator('#main').count(), 0, 'no dashboard DOM in the frame')
        })
      }
    })

    let cdpCredentialCount = 0
    await t.test('AUTH-6: a passkey registered on Chromium\'s virtual authenticator through the dashboard; sign out; sign in with the passkey only', async () => {
      const cdp = await context.newCDPSession(page)
      await cdp.send('WebAuthn.enable')
      const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
        options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
      })
      await page.goto(`${origin}/`)
      const registered = page.waitForResponse((r) => r.url() === `${origin}/api/me/passkeys` && r.request().method() === 'POST')
      await page.locator('#add-passkey').click()
      assert.equal((await registered).status(), 200)
      await page.locator('#who button', { hasText: 'Sign out' }).waitFor()
      assert.equal((await d.passkeys.list(ownerId)).length, 1)
      const creds = await cdp.send('WebAuthn.getCredentials', { authenticatorId })
      assert.equal(creds.credentials.length, 1)
      assert.equal(creds.credentials[0]!.isResidentCredential, true)
      cdpCredentialCount = creds.credentials.length

      // Sign out: the server ends the session, the browser drops the cookie.
      const old = await sessionToken(context, origin)
      assert.ok(old)
      const out = page.waitForResponse((r) => r.url() === `${origin}/auth/sign-out`)
      await page.locator('#who button', { hasText: 'Sign out' }).click()
      const outRes = await out
      assert.equal(outRes.status(), 204)
      assert.match((await outRes.headerValue('clear-site-data')) ?? '', /"cookies"/)
      await page.locator('#passkey-sign-in').waitFor()
      assert.equal(await sessionToken(context, origin), undefined, 'the browser dropped the cookie')
      assert.equal(await statusOf(tg, old), 401, 'the old cookie is dead on the server')

      // Passwordless: the passkey alone signs in (discoverable credential, user verified).
      const signedIn = page.waitForResponse((r) => r.url() === `${origin}/auth/passkey` && r.request().method() === 'POST')
      await page.locator('#passkey-sign-in').click()
      assert.equal((await signedIn).status(), 200)
      await page.locator('#who button', { hasText: 'Sign out' }).waitFor()
      const fresh = await sessionToken(context, origin)
      assert.ok(fresh && fresh !== old)
      const latest = await d.db.db.selectFrom('session').select(['kind', 'user_id']).where('token_hash', '=', (await import('../../src/identity/sessions.ts')).tokenHash(fresh)).executeTakeFirstOrThrow()
      assert.deepEqual(latest, { kind: 'passkey', user_id: ownerId })
    })

    await t.test('AUTH-6 T44: key creation needs a step-up: refused after the window, allowed after a passkey step-up (token rotated), refused again when the window passes; a replayed step-up is refused', async () => {
      assert.equal(cdpCredentialCount, 1, 'needs the passkey from the previous step')
      const keysBefore = (await d.keys.list({ orgId })).length
      // The passkey sign-in was a fresh authentication; 10 min + 1 s later it no longer is.
      clock.advance(10 * MIN + SEC)
      const refused = await apiFromPage(page, 'POST', `/api/orgs/${orgId}/keys`, { environment: 'sandbox' })
      assert.equal(refused.status, 403)
      assert.equal(refused.json.error.code, 'step_up_required')
      assert.equal((await d.keys.list({ orgId })).length, keysBefore)

      // Through the dashboard: "Create key" → step_up_required → passkey → retried → the secret is shown.
      await page.goto(`${origin}/`)
      await page.locator('section.org button', { hasText: 'Create key' }).waitFor()
      const tokenBefore = await sessionToken(context, origin)
      let flowCookie: string | undefined
      let stepUpBody: string | undefined
      page.on('response', async (r) => {
        if (r.url() === `${origin}/api/me/step-up/options`) {
          const sc = (await r.headerValue('set-cookie')) ?? ''
          flowCookie = sc.match(new RegExp(`${FLOW_COOKIE}=([^;]+)`))?.[1]
        }
      })
      page.on('request', (r) => {
        if (r.url() === `${origin}/api/me/step-up` && r.method() === 'POST') stepUpBody = r.postData() ?? undefined
      })
      const steppedUp = page.waitForResponse((r) => r.url() === `${origin}/api/me/step-up` && r.request().method() === 'POST')
      await page.locator('section.org button', { hasText: 'Create key' }).click()
      assert.equal((await steppedUp).status(), 200)
      await page.locator('.secret').waitFor()
      assert.match((await page.locator('.secret').textContent()) ?? '', /^tg_test_/)
      assert.equal((await d.keys.list({ orgId })).length, keysBefore + 1, 'the key was created after the step-up')
      const tokenAfter = await sessionToken(context, origin)
      assert.ok(tokenAfter && tokenAfter !== tokenBefore, 'the step-up rotated the session token')
      const success = await d.db.db.selectFrom('audit_event').select('action').where('action', '=', 'authn_stepup_success').execute()
      assert.equal(success.length, 1)

      // A replay of the captured step-up (same flow cookie, same assertion, current session) while
      // the flow is still within its 10-minute life.
      assert.ok(flowCookie && stepUpBody, 'captured the step-up request')
      clock.advance(9 * MIN)
      const me = await apiFromPage(page, 'GET', '/api/me')
      const replay = await fetch(`${tg.url}/api/me/step-up`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json', origin, 'sec-fetch-site': 'same-origin', 'x-csrf-token': me.json.csrf_token,
          cookie: `${SESSION_COOKIE}=${await sessionToken(context, origin)}; ${FLOW_COOKIE}=${flowCookie}`,
        },
        body: stepUpBody,
      })
      assert.equal(replay.status, 403, 'a replayed assertion is refused')
      assert.equal(((await replay.json()) as any).error.code, 'step_up_required')

      // The real step-up's window ends 10 min after it: the replay did not extend it.
      clock.advance(MIN + SEC)
      const again = await apiFromPage(page, 'POST', `/api/orgs/${orgId}/keys`, { environment: 'sandbox' })
      assert.equal(again.status, 403)
      assert.equal(again.json.error.code, 'step_up_required')
      assert.equal((await d.keys.list({ orgId })).length, keysBefore + 1)
      const denied = await d.db.db.selectFrom('audit_event').select(['action', 'outcome']).where('action', 'in', ['authz_fail', 'authn_stepup_fail']).execute()
      assert.ok(denied.filter((e) => e.action === 'authz_fail').length >= 3, 'each refusal is audited')
      assert.ok(denied.some((e) => e.action === 'authn_stepup_fail'), 'the replay is audited')
    })
  } finally {
    await browser.close()
    await attacker.close()
  }
})
