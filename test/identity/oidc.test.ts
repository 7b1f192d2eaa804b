import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { test } from 'node:test'
import * as jose from 'jose'
import { Browser, IdpRefusal, LocalIdp, RogueIdp, type RogueTokenRequest } from '../fakes/idp.ts'
import {
  api, assertSignInRefused, failReasons, FLOW_COOKIE, googleWorld, holdInvite, invite, me, newOrg, personWithSession, runFlow, SESSION_COOKIE, tally,
  type World,
} from './oidc-world.ts'

/*
 * Sign-in through a real local OpenID provider (oidc-provider) and a rogue one (jose), the test
 * playing the browser with fetch and a cookie jar. What each test proves is in its name; every
 * refused case checks the same three things: 401, no session (in the database or the browser),
 * one `authn_login_fail` audit entry (T54's pass criteria).
 */

/** A fresh Google sign-in of an account that already has a Tollgate user (made through an invite). */
async function signedUpGoogleUser(w: World, sub: string, email: string, orgId: string, authAgeS = 0): Promise<Browser> {
  w.idp.setAccount(sub, { email })
  const b = new Browser()
  await holdInvite(b, w.origin, await invite(w.app, orgId, email))
  const out = await runFlow(b, w.origin, '/auth/google', w.idp, { login: { account: sub, authAgeS } })
  assert.equal(out.status, 303, `sign-up of ${sub}: ${out.error}`)
  assert.ok(b.cookie(w.origin, SESSION_COOKIE))
  return b
}

const sha256b64u = (s: string) => createHash('sha256').update(s).digest('base64url')

test('AUTH-1: Google sign-in (code + PKCE S256, state, nonce, exact redirect URI) accepts an invite, then signs the same account in again', async (t) => {
  const w = await googleWorld(t)
  const org = await newOrg(w.app)
  w.idp.setAccount('g-alice', { email: 'Alice@Example.com' })
  const token = await invite(w.app, org.id, 'alice@example.com')

  const b = new Browser()
  await holdInvite(b, w.origin, token)
  const before = await tally(w.db)
  const first = await runFlow(b, w.origin, '/auth/google', w.idp, { login: { account: 'g-alice' } })
  assert.equal(first.status, 303, `callback answered ${first.error}`)
  assert.equal(first.location, '/')
  assert.deepEqual(first.prompts, ['login', 'consent'], 'the IdP authenticated the person and asked for consent')

  // What Tollgate asked the IdP for.
  const asked = first.authorize!.searchParams
  assert.equal(asked.get('response_type'), 'code')
  assert.equal(asked.get('redirect_uri'), `${w.origin}/auth/callback`)
  assert.equal(asked.get('code_challenge_method'), 'S256')
  assert.match(asked.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/)
  assert.ok((asked.get('state') ?? '').length >= 32 && (asked.get('nonce') ?? '').length >= 32)
  assert.equal(asked.get('client_id'), w.googleClientId)
  assert.match(asked.get('scope') ?? '', /\bopenid\b/)
  assert.equal(first.callback!.searchParams.get('iss'), w.idp.issuer, 'RFC 9207 iss came back')
  // The flow values travel sealed in a __Host- cookie: the browser can read neither state, nonce nor verifier.
  const peek = new Browser()
  const start = await peek.fetch(`${w.origin}/auth/google`)
  const startParams = new URL(start.headers.get('location')!).searchParams
  const setFlow = start.headers.getSetCookie().find((c) => c.startsWith(`${FLOW_COOKIE}=`) && !c.startsWith(`${FLOW_COOKIE}=;`))!
  assert.match(setFlow, /; Path=\/;/)
  assert.match(setFlow, /; HttpOnly/)
  assert.match(setFlow, /; SameSite=Lax/)
  assert.match(setFlow, /; Secure/)
  const sealed = peek.cookie(w.origin, FLOW_COOKIE)!
  for (const v of [startParams.get('state')!, startParams.get('nonce')!]) assert.ok(!sealed.includes(v))
  assert.notEqual(startParams.get('state'), asked.get('state'), 'a new state per flow')

  const m = await me(b, w.origin)
  assert.ok(m)
  assert.equal(m.user.email, 'alice@example.com')
  assert.equal(m.session?.kind, 'google')
  assert.deepEqual(m.memberships.map((x) => [x.org_id, x.role]), [[org.id, 'MEMBER']])
  const after = await tally(w.db)
  assert.equal(after.users, before.users + 1)
  assert.equal(after.sessions, before.sessions + 1)
  assert.equal(after.loginSuccesses, before.loginSuccesses + 1)
  // D3: the account is keyed by HMAC(issuer ‖ sub); neither the raw sub nor the issuer is stored.
  const ids = await w.db.selectFrom('user_identity').selectAll().where('user_id', '=', m.user.id).execute()
  assert.equal(ids.length, 1)
  assert.equal(ids[0]!.provider, 'google')
  assert.ok(!JSON.stringify(ids).includes('g-alice'))
  // The invite is used up.
  assert.equal(await w.app.deps.invites.open(token), undefined)

  // A second browser (no invite, no IdP session): the same account signs in again, a new session.
  const b2 = new Browser()
  const again = await runFlow(b2, w.origin, '/auth/google', w.idp, { login: { account: 'g-alice' } })
  assert.equal(again.status, 303, `second sign-in: ${again.error}`)
  assert.deepEqual(again.prompts, ['login', 'consent'])
  const m2 = await me(b2, w.origin)
  assert.equal(m2?.user.id, m.user.id)
  assert.notEqual(m2?.session?.id, m.session?.id)
  assert.notEqual(b2.cookie(w.origin, SESSION_COOKIE), b.cookie(w.origin, SESSION_COOKIE))
  assert.equal((await tally(w.db)).users, after.users, 'no second user')

  // Someone the IdP knows but Tollgate does not (no account, no invite) gets nothing.
  w.idp.setAccount('g-stranger', { email: 'stranger@example.com' })
  const reason = await assertSignInRefused(w, new Browser(), () => runFlow(new Browser(), w.origin, '/auth/google', w.idp, { login: { account: 'g-stranger' } }), 'no account')
  assert.equal(reason, 'no_account')
  assert.deepEqual(w.idp.serverErrors, [])
})

test('AUTH-1 / T55: the IdP subject is the account — a new email follows the same sub, and a new sub carrying an existing email takes nothing over', async (t) => {
  const w = await googleWorld(t)
  const org = await newOrg(w.app)
  const b = await signedUpGoogleUser(w, 'g-bob', 'bob@old.example', org.id)
  const bob = (await me(b, w.origin))!

  // 1. Same sub, new email at the IdP: the same account, its email updated (100%).
  w.idp.setAccount('g-bob', { email: 'bob@new.example' })
  const b2 = new Browser()
  const renamed = await runFlow(b2, w.origin, '/auth/google', w.idp, { login: { account: 'g-bob' } })
  assert.equal(renamed.status, 303, `renamed sign-in: ${renamed.error}`)
  const bob2 = (await me(b2, w.origin))!
  assert.equal(bob2.user.id, bob.user.id, 'same account')
  assert.equal(bob2.user.email, 'bob@new.example', 'email follows the IdP')
  assert.deepEqual(bob2.memberships, bob.memberships)

  // 2. A new sub with Bob's (current) email — the re-registered-domain case: 0 takeovers.
  w.idp.setAccount('g-imposter', { email: 'bob@new.example' })
  const attacker = new Browser()
  const reason = await assertSignInRefused(w, attacker, () => runFlow(attacker, w.origin, '/auth/google', w.idp, { login: { account: 'g-imposter' } }), 'new sub, existing email')
  assert.equal(reason, 'no_account')

  // Even holding a fresh invite for that email, the imposter gets a separate, new account: never Bob's.
  const org2 = await newOrg(w.app)
  const b3 = new Browser()
  await holdInvite(b3, w.origin, await invite(w.app, org2.id, 'bob@new.example'))
  const out = await runFlow(b3, w.origin, '/auth/google', w.idp, { login: { account: 'g-imposter' } })
  assert.equal(out.status, 303, `invited imposter: ${out.error}`)
  const imposter = (await me(b3, w.origin))!
  assert.notEqual(imposter.user.id, bob.user.id, 'not Bob')
  assert.deepEqual(imposter.memberships.map((x) => x.org_id), [org2.id], 'none of Bob\'s memberships')
  const orgs = await api(b3, w.origin, 'GET', `/api/orgs/${org.id}`)
  assert.equal(orgs.status, 404, 'no access to Bob\'s org')
  const bobNow = (await me(b2, w.origin))!
  assert.deepEqual(bobNow.memberships.map((x) => x.org_id), [org.id], 'Bob did not gain the imposter\'s org either')
  const live = await w.app.deps.sessions.live(bob.user.id)
  assert.equal(live.length, 2, 'Bob\'s sessions are his two own sign-ins only')
})

test('AUTH-2: org SSO end to end — configured by an OWNER through the API, JIT MEMBER through the org IdP, other domains refused', async (t) => {
  const w = await googleWorld(t)
  const org = await newOrg(w.app, 'corp')
  const corpIdp = await LocalIdp.start({ path: '/corp' })
  t.after(() => corpIdp.close())
  const secret = randomBytes(24).toString('base64url')
  corpIdp.registerClient({ client_id: 'tollgate-corp', client_secret: secret, redirect_uris: [`${w.origin}/auth/callback`] })
  const sso = { issuer: corpIdp.issuer, client_id: 'tollgate-corp', client_secret: secret, allowed_domains: ['corp.test'] }

  // A stale OWNER session may not change SSO (sso.write is sensitive, AUTH-6).
  const staleOwner = await personWithSession(w.app, 'old-owner@corp.test', org.id, 'OWNER', 20 * 60_000)
  const refused = await api(staleOwner.browser, w.origin, 'PUT', `/api/orgs/${org.id}/sso`, sso)
  assert.equal(refused.status, 403)
  assert.equal((refused.json['error'] as { code: string }).code, 'step_up_required')

  const owner = await personWithSession(w.app, 'owner@corp.test', org.id, 'OWNER')
  const put = await api(owner.browser, w.origin, 'PUT', `/api/orgs/${org.id}/sso`, sso)
  assert.equal(put.status, 200, JSON.stringify(put.json))
  const view = await api(owner.browser, w.origin, 'GET', `/api/orgs/${org.id}/sso`)
  assert.equal(view.status, 200)
  assert.equal((view.json['sso'] as { has_client_secret: boolean }).has_client_secret, true)
  assert.ok(!JSON.stringify(view.json).includes(secret), 'the client secret is never returned')
  assert.equal(view.json['sign_in_url'], `${w.origin}/auth/sso/corp`)

  corpIdp.setAccount('corp-emp-1', { email: 'emp@corp.test' })
  const b = new Browser()
  const before = await tally(w.db)
  const out = await runFlow(b, w.origin, '/auth/sso/corp', corpIdp, { login: { account: 'corp-emp-1' } })
  assert.equal(out.status, 303, `SSO callback: ${out.error}`)
  assert.equal(out.authorize!.origin + out.authorize!.pathname, `${corpIdp.issuer}/auth`, 'sent to the org\'s own IdP')
  assert.equal(out.authorize!.searchParams.get('client_id'), 'tollgate-corp')
  assert.equal(out.authorize!.searchParams.get('code_challenge_method'), 'S256')
  const emp = (await me(b, w.origin))!
  assert.equal(emp.session?.kind, 'sso')
  assert.equal(emp.user.email, 'emp@corp.test')
  assert.deepEqual(emp.memberships.map((x) => [x.org_id, x.role]), [[org.id, 'MEMBER']], 'just-in-time MEMBER')
  const row = await w.db.selectFrom('session').selectAll().where('id', '=', emp.session!.id).executeTakeFirstOrThrow()
  assert.equal(row.org_id, org.id)
  assert.equal(row.idle_timeout_ms, 3600_000, 'SSO sessions idle out after 1 h (AUTH-4)')
  assert.equal(row.absolute_expires_at - row.created_at, 8 * 3600_000, 'and end after 8 h')
  const after = await tally(w.db)
  assert.equal(after.users, before.users + 1)
  assert.equal(after.memberships, before.memberships + 1)
  const jit = await w.db.selectFrom('audit_event').where('chain_id', '=', org.id).where('action', '=', 'user_created_by_sso').selectAll().execute()
  assert.equal(jit.length, 1)

  // The same person again: same account, no second membership.
  const b2 = new Browser()
  assert.equal((await runFlow(b2, w.origin, '/auth/sso/corp', corpIdp, { login: { account: 'corp-emp-1' } })).status, 303)
  assert.equal((await me(b2, w.origin))!.user.id, emp.user.id)
  assert.equal((await tally(w.db)).memberships, after.memberships)

  // A person the org IdP vouches for, from a domain the org did not allow: refused, nothing created.
  corpIdp.setAccount('corp-contractor', { email: 'someone@elsewhere.test' })
  const outsider = new Browser()
  const reason = await assertSignInRefused(w, outsider, () => runFlow(outsider, w.origin, '/auth/sso/corp', corpIdp, { login: { account: 'corp-contractor' } }), 'domain not allowed')
  assert.equal(reason, 'domain_not_allowed')
  // An unverified email at an allowed domain: refused too.
  corpIdp.setAccount('corp-unverified', { email: 'new@corp.test', email_verified: false })
  const unverified = new Browser()
  assert.equal(await assertSignInRefused(w, unverified, () => runFlow(unverified, w.origin, '/auth/sso/corp', corpIdp, { login: { account: 'corp-unverified' } }), 'sso email_verified false'), 'email_not_verified')
  const fails = await w.db.selectFrom('audit_event').where('chain_id', '=', org.id).where('action', '=', 'authn_login_fail').selectAll().execute()
  assert.equal(fails.length, 2, 'SSO refusals are audited in the org\'s own chain')

  // Another org naming corp's issuer and client id, without corp's secret, borrows nothing:
  // the IdP refuses its token request, and nobody from corp lands in it.
  const copycat = await newOrg(w.app, 'copycat')
  await w.app.deps.sso.put(w.db, copycat.id, { issuer: corpIdp.issuer, clientId: 'tollgate-corp', clientSecret: 'a-guess', allowedDomains: ['corp.test'] })
  const lured = new Browser()
  assert.match(await assertSignInRefused(w, lured, () => runFlow(lured, w.origin, '/auth/sso/copycat', corpIdp, { login: { account: 'corp-emp-1' } }), 'another org with corp\'s client id'), /^OAUTH_/)
  assert.deepEqual((await w.app.deps.users.memberships(emp.user.id)).map((x) => x.orgId), [org.id])

  // Corp rotates its client secret (IdP first, then Tollgate): the next sign-in uses the new one at once.
  const rotated = randomBytes(24).toString('base64url')
  corpIdp.registerClient({ client_id: 'tollgate-corp', client_secret: rotated, redirect_uris: [`${w.origin}/auth/callback`] })
  assert.equal((await api(owner.browser, w.origin, 'PUT', `/api/orgs/${org.id}/sso`, { ...sso, client_secret: rotated })).status, 200)
  const b3 = new Browser()
  const afterRotation = await runFlow(b3, w.origin, '/auth/sso/corp', corpIdp, { login: { account: 'corp-emp-1' } })
  assert.equal(afterRotation.status, 303, `after secret rotation: ${afterRotation.error}`)
  assert.deepEqual(corpIdp.serverErrors, [])
})

test('AUTH-1 / T54: OIDC negative suite against the real IdP — state, nonce, PKCE, code reuse, RFC 9207 iss, redirect_uri, email_verified, login CSRF; each rejected, 0 sessions, audited', async (t) => {
  const w = await googleWorld(t)
  const org = await newOrg(w.app)
  // An account that would get a session if the flow were honest (the positive control runs first).
  await signedUpGoogleUser(w, 'g-carol', 'carol@example.com', org.id)
  const honest = new Browser()
  const ok = await runFlow(honest, w.origin, '/auth/google', w.idp, { login: { account: 'g-carol' } })
  assert.equal(ok.status, 303, `honest control: ${ok.error}`)
  const login = { account: 'g-carol' }
  const refuse = async (label: string, run: (b: Browser) => Promise<import('./oidc-world.ts').Outcome>) => {
    const b = new Browser()
    return assertSignInRefused(w, b, () => run(b), label)
  }
  const flow = (b: Browser, opts: Parameters<typeof runFlow>[4] = {}) => runFlow(b, w.origin, '/auth/google', w.idp, { login, ...opts })

  await t.test('state: wrong, missing', async () => {
    await refuse('wrong state', (b) => flow(b, { tamperCallback: (u) => u.searchParams.set('state', randomBytes(32).toString('base64url')) }))
    await refuse('missing state', (b) => flow(b, { tamperCallback: (u) => u.searchParams.delete('state') }))
  })

  await t.test('state reused: the same authorization request replayed for a fresh code, with the used flow cookie', async () => {
    const b = new Browser()
    const first = await flow(b, { holdCallback: true })
    const flowCookie = b.cookie(w.origin, FLOW_COOKIE)!
    assert.ok(flowCookie)
    const done = await b.fetch(first.callback!)
    assert.equal(done.status, 303, 'the first use signs in')
    b.deleteCookie(w.origin, SESSION_COOKIE)
    // The same authorization request again (same state, nonce, PKCE challenge): the IdP, which
    // still has the person's session, hands out a new code for it.
    const replay = await w.idp.authorize(b, first.authorize!, login)
    assert.deepEqual(replay.prompts, [], 'no login needed at the IdP')
    assert.equal(replay.callback.searchParams.get('state'), first.callback!.searchParams.get('state'))
    b.setCookie(w.origin, FLOW_COOKIE, flowCookie)
    await assertSignInRefused(w, b, async () => {
      const res = await b.fetch(replay.callback)
      return { status: res.status, error: ((await res.json()) as { error: { code: string } }).error.code, location: undefined, callback: undefined, authorize: undefined, prompts: [] }
    }, 'reused state').then((reason) => assert.equal(reason, 'state_reused'))
  })

  await t.test('nonce: wrong, missing (changed in the authorization request, so the IdP signs another nonce)', async () => {
    await refuse('wrong nonce', (b) => flow(b, { tamperAuthorize: (u) => u.searchParams.set('nonce', randomBytes(32).toString('base64url')) }))
    await refuse('missing nonce', (b) => flow(b, { tamperAuthorize: (u) => u.searchParams.delete('nonce') }))
  })

  await t.test('PKCE: an attacker\'s challenge in the request (verifier mismatch), and no challenge at all', async () => {
    const attackerVerifier = randomBytes(32).toString('base64url')
    await refuse('PKCE verifier mismatch', (b) => flow(b, { tamperAuthorize: (u) => u.searchParams.set('code_challenge', sha256b64u(attackerVerifier)) }))
    // The IdP requires PKCE: it answers the client with an error, which Tollgate refuses.
    await refuse('PKCE missing', (b) => flow(b, { tamperAuthorize: (u) => { u.searchParams.delete('code_challenge'); u.searchParams.delete('code_challenge_method') } }))
  })

  await t.test('authorization code reused: the whole callback replayed, and the old code in a new flow', async () => {
    const b = new Browser()
    const first = await flow(b, { holdCallback: true })
    const flowCookie = b.cookie(w.origin, FLOW_COOKIE)!
    assert.equal((await b.fetch(first.callback!)).status, 303)
    b.deleteCookie(w.origin, SESSION_COOKIE)
    b.setCookie(w.origin, FLOW_COOKIE, flowCookie)
    await assertSignInRefused(w, b, async () => {
      const res = await b.fetch(first.callback!)
      return { status: res.status, error: ((await res.json()) as { error: { code: string } }).error.code, location: undefined, callback: undefined, authorize: undefined, prompts: [] }
    }, 'callback replayed').then((reason) => assert.equal(reason, 'state_reused'))
    // A new flow (new state and verifier) fed the used code.
    const b2 = new Browser()
    await assertSignInRefused(w, b2, async () => {
      const start = await b2.fetch(`${w.origin}/auth/google`)
      const state = new URL(start.headers.get('location')!).searchParams.get('state')!
      const cb = new URL(first.callback!)
      cb.searchParams.set('state', state)
      const res = await b2.fetch(cb)
      return { status: res.status, error: ((await res.json()) as { error: { code: string } }).error.code, location: undefined, callback: undefined, authorize: undefined, prompts: [] }
    }, 'code reused in a new flow')
  })

  await t.test('RFC 9207: an iss response parameter that is not the issuer, or missing although advertised', async () => {
    await refuse('iss parameter mismatch', (b) => flow(b, { tamperCallback: (u) => u.searchParams.set('iss', 'https://accounts.evil.test') }))
    await refuse('iss parameter missing', (b) => flow(b, { tamperCallback: (u) => u.searchParams.delete('iss') }))
  })

  await t.test('email_verified false', async () => {
    await signedUpGoogleUser(w, 'g-dave', 'dave@example.com', org.id)
    w.idp.setAccount('g-dave', { email: 'dave@example.com', email_verified: false })
    const reason = await refuse('email_verified false', (b) => runFlow(b, w.origin, '/auth/google', w.idp, { login: { account: 'g-dave' } }))
    assert.equal(reason, 'email_not_verified')
  })

  await t.test('redirect_uri: the IdP refuses an unregistered one, and a code issued for another registered URI fails at the token endpoint', async () => {
    const before = await tally(w.db)
    const b = new Browser()
    await assert.rejects(flow(b, { tamperAuthorize: (u) => u.searchParams.set('redirect_uri', 'http://127.0.0.1:9/steal') }), (err: unknown) => {
      assert.ok(err instanceof IdpRefusal)
      assert.equal(err.status, 400)
      assert.match(String(err.body.error), /redirect_uri/)
      return true
    })
    // Exact string match: a near-miss of the registered URI is unregistered too.
    await assert.rejects(flow(new Browser(), { tamperAuthorize: (u) => u.searchParams.set('redirect_uri', `${w.origin}/auth/callback/`) }), IdpRefusal)
    assert.deepEqual(await tally(w.db), before, 'the IdP never came back: nothing happened at Tollgate')

    // A client with a second registered redirect URI: the code issued to it is planted into
    // Tollgate's callback with the right state and flow cookie; the token endpoint refuses it.
    const other = 'http://127.0.0.1:9/other/callback'
    w.idp.registerClient({ client_id: w.googleClientId, client_secret: w.googleClientSecret, redirect_uris: [`${w.origin}/auth/callback`, other] })
    try {
      await refuse('code for another redirect_uri', async (b2) => {
        const out = await flow(b2, { tamperAuthorize: (u) => u.searchParams.set('redirect_uri', other), holdCallback: true })
        assert.equal(out.callback!.origin + out.callback!.pathname, other)
        const planted = new URL(`${w.origin}/auth/callback`)
        for (const [k, v] of out.callback!.searchParams) planted.searchParams.set(k, v)
        const res = await b2.fetch(planted)
        return { status: res.status, error: ((await res.json()) as { error: { code: string } }).error.code, location: undefined, callback: undefined, authorize: undefined, prompts: [] }
      })
    } finally {
      w.idp.registerClient({ client_id: w.googleClientId, client_secret: w.googleClientSecret, redirect_uris: [`${w.origin}/auth/callback`] })
    }
  })

  await t.test('AUTH-5 login CSRF: an attacker\'s authorization response planted in the victim\'s browser creates no session', async () => {
    w.idp.setAccount('g-mallory', { email: 'mallory@example.com' })
    await signedUpGoogleUser(w, 'g-mallory', 'mallory@example.com', org.id)
    const attacker = new Browser()
    const theirs = await runFlow(attacker, w.origin, '/auth/google', w.idp, { login: { account: 'g-mallory' }, holdCallback: true })
    // (a) the victim's browser has no flow cookie at all.
    const victim = new Browser()
    const reason = await assertSignInRefused(w, victim, async () => {
      const res = await victim.fetch(theirs.callback!)
      return { status: res.status, error: ((await res.json()) as { error: { code: string } }).error.code, location: undefined, callback: undefined, authorize: undefined, prompts: [] }
    }, 'login CSRF, no flow cookie')
    assert.equal(reason, 'no_flow')
    // (b) the victim is in the middle of their own sign-in: the state does not match theirs.
    const victim2 = new Browser()
    assert.equal((await victim2.fetch(`${w.origin}/auth/google`)).status, 303)
    await assertSignInRefused(w, victim2, async () => {
      const res = await victim2.fetch(theirs.callback!)
      return { status: res.status, error: ((await res.json()) as { error: { code: string } }).error.code, location: undefined, callback: undefined, authorize: undefined, prompts: [] }
    }, 'login CSRF, victim mid-flow')
    // Positive control: the planted response was a good one — in the attacker's own browser it signs in.
    const own = await attacker.fetch(theirs.callback!)
    assert.equal(own.status, 303)
    assert.equal((await me(attacker, w.origin))?.user.email, 'mallory@example.com')
  })

  const reasons = await failReasons(w.db)
  assert.ok(reasons.length >= 14, `every refusal audited (${reasons.length})`)
  assert.deepEqual(w.idp.serverErrors, [])
})

test('AUTH-1 / T54: Google hd — when the instance restricts domains, hd missing or mismatched is refused; the matching hd signs in', async (t) => {
  const w = await googleWorld(t, { allowedDomains: 'acme.test' })
  const org = await newOrg(w.app)
  const asked = async (sub: string, claims: { email: string; hd?: string }) => {
    w.idp.setAccount(sub, claims)
    const b = new Browser()
    await holdInvite(b, w.origin, await invite(w.app, org.id, claims.email))
    return { b, run: () => runFlow(b, w.origin, '/auth/google', w.idp, { login: { account: sub } }) }
  }
  const good = await asked('g-erin', { email: 'erin@acme.test', hd: 'acme.test' })
  const out = await good.run()
  assert.equal(out.status, 303, `matching hd: ${out.error}`)
  assert.equal(out.authorize!.searchParams.get('hd'), 'acme.test', 'hd is sent as a hint')

  const missing = await asked('g-frank', { email: 'frank@acme.test' })
  assert.equal(await assertSignInRefused(w, missing.b, missing.run, 'hd missing'), 'hd_mismatch')
  const wrong = await asked('g-grace', { email: 'grace@acme.test', hd: 'evil.test' })
  assert.equal(await assertSignInRefused(w, wrong.b, wrong.run, 'hd mismatched'), 'hd_mismatch')
  const otherDomain = await asked('g-heidi', { email: 'heidi@evil.test', hd: 'acme.test' })
  assert.equal(await assertSignInRefused(w, otherDomain.b, otherDomain.run, 'email domain not allowed'), 'domain_not_allowed')
})

test('AUTH-2 / T54: crafted ID tokens from a rogue org IdP — iss, aud, azp, exp, iat, foreign key, alg none, HS256 key confusion, unknown kid; rogue discovery metadata', async (t) => {
  const w = await googleWorld(t)
  const rogue = await RogueIdp.start({ path: '/rogue' })
  t.after(() => rogue.close())
  const org = await newOrg(w.app, 'rogue-org')
  await w.app.deps.sso.put(w.db, org.id, { issuer: rogue.issuer, clientId: 'tg-rogue', clientSecret: 'rogue-secret', allowedDomains: ['rogue.test'] })
  const flow = (b: Browser) => runFlow(b, w.origin, '/auth/sso/rogue-org', rogue)

  // Positive control: an honest token from the same provider signs in.
  const honest = new Browser()
  const ok = await flow(honest)
  assert.equal(ok.status, 303, `honest rogue token: ${ok.error}`)
  assert.equal((await me(honest, w.origin))?.session?.kind, 'sso')

  const { privateKey: foreignKey } = await jose.generateKeyPair('RS256')
  // Each case differs from the honest control in one thing only; the audited reason names the check
  // that caught it (openid-client's OAUTH_* codes, or Tollgate's own).
  const OPENID_CLIENT = /^OAUTH_/
  const cases: [string, RegExp, (r: RogueTokenRequest) => Promise<string> | string][] = [
    ['iss mismatch', OPENID_CLIENT, (r) => rogue.sign(rogue.honestClaims(r, { iss: 'https://accounts.google.com' }))],
    ['aud mismatch', OPENID_CLIENT, (r) => rogue.sign(rogue.honestClaims(r, { aud: 'some-other-client' }))],
    ['multiple aud without azp', OPENID_CLIENT, (r) => rogue.sign(rogue.honestClaims(r, { aud: [r.clientId, 'some-other-client'] }))],
    ['multiple aud with a foreign azp', OPENID_CLIENT, (r) => rogue.sign(rogue.honestClaims(r, { aud: [r.clientId, 'some-other-client'], azp: 'some-other-client' }))],
    ['exp in the past', OPENID_CLIENT, (r) => rogue.sign(rogue.honestClaims(r, { iat: r.now - 900, exp: r.now - 600 }))],
    ['iat far in the future', /^iat_in_future$/, (r) => rogue.sign(rogue.honestClaims(r, { iat: r.now + 3600, exp: r.now + 7200 }))],
    ['auth_time far in the future', /^auth_time_in_future$/, (r) => rogue.sign(rogue.honestClaims(r, { auth_time: r.now + 3600 }))],
    ['signature by an unknown key', OPENID_CLIENT, (r) => rogue.sign(rogue.honestClaims(r), { key: foreignKey })],
    ['signature bytes altered', OPENID_CLIENT, async (r) => {
      const jws = await rogue.sign(rogue.honestClaims(r))
      const [h, p] = jws.split('.')
      return `${h}.${p}.${randomBytes(256).toString('base64url')}`
    }],
    ['payload altered after signing', OPENID_CLIENT, async (r) => {
      const jws = await rogue.sign(rogue.honestClaims(r))
      const [h, , s] = jws.split('.')
      return `${h}.${Buffer.from(JSON.stringify(rogue.honestClaims(r, { email: 'ceo@rogue.test' }))).toString('base64url')}.${s}`
    }],
    ['alg none', OPENID_CLIENT, (r) => rogue.unsigned(rogue.honestClaims(r))],
    ['HS256 signed with the IdP\'s public key', OPENID_CLIENT, (r) => rogue.hs256WithPublicKey(rogue.honestClaims(r))],
    ['unknown kid', OPENID_CLIENT, (r) => rogue.sign(rogue.honestClaims(r), { kid: 'not-in-the-jwks' })],
    ['no nonce', OPENID_CLIENT, (r) => rogue.sign(rogue.honestClaims(r, { nonce: undefined }))],
    ['wrong nonce', OPENID_CLIENT, (r) => rogue.sign(rogue.honestClaims(r, { nonce: randomBytes(16).toString('base64url') }))],
    ['email_verified false', /^email_not_verified$/, (r) => rogue.sign(rogue.honestClaims(r, { email_verified: false }))],
    ['email_verified as a string', /^email_not_verified$/, (r) => rogue.sign(rogue.honestClaims(r, { email_verified: 'true' }))],
    ['replayed ID token from an earlier sign-in', OPENID_CLIENT, () => rogue.issued[0]!],
  ]
  for (const [label, reason, mint] of cases) {
    await t.test(label, async () => {
      rogue.mint = async (r) => mint(r)
      const b = new Browser()
      try {
        assert.match(await assertSignInRefused(w, b, () => flow(b), label), reason)
      } finally {
        rogue.mint = (r) => rogue.sign(rogue.honestClaims(r))
      }
    })
  }

  await t.test('iss mismatch in the rogue\'s discovery metadata (an issuer claiming to be another)', async () => {
    const liar = await RogueIdp.start({ path: '/liar', metadataIssuer: 'https://accounts.google.com' })
    t.after(() => liar.close())
    const org2 = await newOrg(w.app, 'liar-org')
    await w.app.deps.sso.put(w.db, org2.id, { issuer: liar.issuer, clientId: 'tg-liar', clientSecret: 'liar-secret', allowedDomains: ['rogue.test'] })
    const b = new Browser()
    assert.equal(await assertSignInRefused(w, b, () => runFlow(b, w.origin, '/auth/sso/liar-org', liar), 'rogue discovery metadata'), 'discovery_failed')
  })

  // Sanity: after all that, the honest path still works (nothing was refused for an unrelated reason).
  const again = new Browser()
  assert.equal((await flow(again)).status, 303)
})

test('AUTH-6 / T44: step-up through the IdP — max_age=0 re-authentication rotates the session and unlocks sensitive actions; stale auth_time, replays and another account are refused', async (t) => {
  const w = await googleWorld(t)
  const org = await newOrg(w.app)
  // The person's IdP session is 20 minutes old: signing in rides on it without a new login.
  w.idp.setAccount('g-ivan', { email: 'ivan@example.com' })
  const b = new Browser()
  await holdInvite(b, w.origin, await invite(w.app, org.id, 'ivan@example.com'))
  const signIn = await runFlow(b, w.origin, '/auth/google', w.idp, { login: { account: 'g-ivan', authAgeS: 20 * 60 } })
  assert.equal(signIn.status, 303, `sign-in: ${signIn.error}`)
  const ivan = (await me(b, w.origin))!
  assert.equal(ivan.session?.step_up_valid_until, null, 'a sign-in on a 20-minute-old IdP authentication is not a fresh authentication')

  // (a)/(b) without a fresh authentication the sensitive action is refused.
  const createKey = () => api(b, w.origin, 'POST', `/api/orgs/${org.id}/keys`, { environment: 'sandbox' })
  const denied = await createKey()
  assert.equal(denied.status, 403)
  assert.equal((denied.json['error'] as { code: string }).code, 'step_up_required')

  const stepUp = async (opts: Parameters<typeof runFlow>[4]) => runFlow(b, w.origin, '/auth/step-up', w.idp, opts)
  const expectStepUpRefused = async (label: string, run: () => Promise<import('./oidc-world.ts').Outcome>) => {
    const cookie = b.cookie(w.origin, SESSION_COOKIE)
    const before = await tally(w.db)
    const out = await run()
    const after = await tally(w.db)
    assert.equal(out.status, 403, `${label}: ${out.status} ${out.error}`)
    assert.equal(out.error, 'step_up_required', label)
    assert.equal(after.stepUpFails, before.stepUpFails + 1, `${label}: audited as authn_stepup_fail`)
    assert.equal(after.stepUpSuccesses, before.stepUpSuccesses, label)
    assert.equal(after.sessions, before.sessions, `${label}: no new session`)
    assert.equal(b.cookie(w.origin, SESSION_COOKIE), cookie, `${label}: the session token did not change`)
    const still = await createKey()
    assert.equal(still.status, 403, `${label}: the sensitive action is still refused`)
  }

  // (d) the user agent strips max_age and prompt=login: the IdP skips the login and returns the old auth_time.
  await expectStepUpRefused('stale auth_time', async () => {
    const out = await stepUp({ tamperAuthorize: (u) => { u.searchParams.delete('max_age'); u.searchParams.delete('prompt') } })
    assert.deepEqual(out.prompts, [], 'the IdP did not ask for a login')
    return out
  })

  // (c) a real step-up: Tollgate asks for max_age=0 and prompt=login, the IdP logs the person in again.
  const oldToken = b.cookie(w.origin, SESSION_COOKIE)!
  const before = await tally(w.db)
  const fresh = await stepUp({ login: { account: 'g-ivan' }, holdCallback: true })
  const freshFlowCookie = b.cookie(w.origin, FLOW_COOKIE)!
  const delivered = await b.fetch(fresh.callback!)
  assert.equal(delivered.status, 303, `step-up: ${delivered.status} ${await delivered.text()}`)
  assert.equal(delivered.headers.get('location'), '/')
  assert.equal(fresh.authorize!.searchParams.get('max_age'), '0')
  assert.equal(fresh.authorize!.searchParams.get('prompt'), 'login')
  assert.deepEqual(fresh.prompts, ['login'], 'the IdP re-authenticated the person')
  const newToken = b.cookie(w.origin, SESSION_COOKIE)!
  assert.notEqual(newToken, oldToken, 'the session token rotated')
  assert.equal((await tally(w.db)).stepUpSuccesses, before.stepUpSuccesses + 1)
  const after = (await me(b, w.origin))!
  assert.equal(after.session?.id, ivan.session?.id, 'same session')
  assert.ok(after.session?.step_up_valid_until, 'the step-up window is open')
  const created = await createKey()
  assert.equal(created.status, 201, JSON.stringify(created.json))

  // (e) replays: make the session stale again, then present an old code in a new step-up flow.
  await w.db.updateTable('session').set({ auth_at: w.app.deps.clock.now() - 20 * 60_000 }).where('id', '=', ivan.session!.id).execute()
  assert.equal((await createKey()).status, 403)
  await expectStepUpRefused('replayed code', async () => {
    const start = await b.fetch(`${w.origin}/auth/step-up`)
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!
    const cb = new URL(fresh.callback!)
    cb.searchParams.set('state', state)
    const res = await b.fetch(cb)
    return { status: res.status, error: ((await res.json()) as { error: { code: string } }).error.code, location: undefined, callback: undefined, authorize: undefined, prompts: [] }
  })
  // The whole earlier step-up callback replayed, with that flow's own (copied) cookie.
  await expectStepUpRefused('replayed step-up callback', async () => {
    b.setCookie(w.origin, FLOW_COOKIE, freshFlowCookie)
    const res = await b.fetch(fresh.callback!)
    return { status: res.status, error: ((await res.json()) as { error: { code: string } }).error.code, location: undefined, callback: undefined, authorize: undefined, prompts: [] }
  })

  // Another account at the IdP cannot step up this session.
  w.idp.setAccount('g-judy', { email: 'judy@example.com' })
  await signedUpGoogleUser(w, 'g-judy', 'judy@example.com', org.id)
  b.forget(w.idp.origin)
  await expectStepUpRefused('another account', () => stepUp({ login: { account: 'g-judy' } }))

  // A step-up needs a session.
  const anon = new Browser()
  const res = await anon.fetch(`${w.origin}/auth/step-up`)
  assert.equal(res.status, 401)
  await res.body?.cancel()
  assert.deepEqual(w.idp.serverErrors, [])
})

test('AUTH-6 / T44: step-up for an org SSO session through a rogue IdP — a replayed old ID token is refused, a fresh one accepted', async (t) => {
  const w = await googleWorld(t)
  const rogue = await RogueIdp.start({ path: '/rogue' })
  t.after(() => rogue.close())
  const org = await newOrg(w.app, 'sso-org')
  await w.app.deps.sso.put(w.db, org.id, { issuer: rogue.issuer, clientId: 'tg-rogue', clientSecret: 'rogue-secret', allowedDomains: ['rogue.test'] })
  const b = new Browser()
  assert.equal((await runFlow(b, w.origin, '/auth/sso/sso-org', rogue)).status, 303)
  const s = (await me(b, w.origin))!
  await w.db.updateTable('session').set({ auth_at: w.app.deps.clock.now() - 20 * 60_000 }).where('id', '=', s.session!.id).execute()
  const createKey = () => api(b, w.origin, 'POST', `/api/orgs/${org.id}/keys`, { environment: 'sandbox' })
  assert.equal((await createKey()).status, 403)

  for (const [label, mint] of [
    ['replayed ID token', () => rogue.issued[0]!],
    ['stale auth_time', (r: RogueTokenRequest) => rogue.sign(rogue.honestClaims(r, { auth_time: r.now - 20 * 60 }))],
    ['no auth_time', (r: RogueTokenRequest) => rogue.sign(rogue.honestClaims(r, { auth_time: undefined }))],
    ['auth_time in the future', (r: RogueTokenRequest) => rogue.sign(rogue.honestClaims(r, { auth_time: r.now + 3600 }))],
  ] as const) {
    rogue.mint = async (r) => mint(r)
    const before = await tally(w.db)
    const out = await runFlow(b, w.origin, '/auth/step-up', rogue)
    assert.equal(out.status, 403, `${label}: ${out.status} ${out.error}`)
    assert.equal(out.error, 'step_up_required', label)
    assert.equal((await tally(w.db)).stepUpFails, before.stepUpFails + 1, label)
    assert.equal((await createKey()).status, 403, label)
  }
  rogue.mint = (r) => rogue.sign(rogue.honestClaims(r))
  const ok = await runFlow(b, w.origin, '/auth/step-up', rogue)
  assert.equal(ok.status, 303, `fresh step-up: ${ok.error}`)
  assert.equal((await createKey()).status, 201)
  const row = await w.db.selectFrom('session').selectAll().where('id', '=', s.session!.id).executeTakeFirstOrThrow()
  assert.ok(row.auth_at <= w.app.deps.clock.now(), 'auth_at is never in the future')
})
