// The Tollgate dashboard: plain JavaScript that talks only to the admin API.
// Tokens from links arrive in the URL fragment (never sent to a server) and are posted once.
'use strict'
const $main = document.getElementById('main')
const $who = document.getElementById('who')
const $notice = document.getElementById('notice')
let csrf = null

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v)
    else if (v !== undefined && v !== null) e.setAttribute(k, v)
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)))
  return e
}

async function api(method, path, body) {
  const headers = { accept: 'application/json' }
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (csrf && method !== 'GET') headers['x-csrf-token'] = csrf
  const res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.text()
  const data = text ? JSON.parse(text) : null
  if (!res.ok) {
    const err = new Error((data && data.error && data.error.message) || `HTTP ${res.status}`)
    err.code = data && data.error && data.error.code
    throw err
  }
  return data
}

function show(...nodes) {
  $main.replaceChildren(...nodes)
}

function fail(e) {
  return el('p', { class: 'error' }, e.message)
}

/** Runs a sensitive action; on step_up_required, asks for a passkey and retries once. */
async function sensitive(fn) {
  try {
    return await fn()
  } catch (e) {
    if (e.code !== 'step_up_required') throw e
    await stepUp()
    return fn()
  }
}

async function stepUp() {
  const options = await api('POST', '/api/me/step-up/options', {})
  if (!options.allowCredentials || options.allowCredentials.length === 0) {
    // No passkey: step up by signing in again at the identity provider.
    location.href = '/auth/step-up'
    throw new Error('Redirecting to your identity provider to confirm it is you…')
  }
  const response = await SimpleWebAuthnBrowser.startAuthentication({ optionsJSON: options })
  await api('POST', '/api/me/step-up', response)
  await loadMe()
}

async function loadMe() {
  const me = await api('GET', '/api/me')
  csrf = me.csrf_token
  return me
}

async function signInPage() {
  const providers = await api('GET', '/auth/providers')
  const slug = el('input', { placeholder: 'your-org', 'aria-label': 'org slug' })
  show(el('section', {},
    el('h2', {}, 'Sign in'),
    providers.google ? el('p', {}, el('a', { href: '/auth/google' }, el('button', { class: 'primary' }, 'Sign in with Google'))) : '',
    el('p', {}, slug, ' ', el('button', { onclick: () => { if (slug.value) location.href = `/auth/sso/${encodeURIComponent(slug.value)}` } }, "Sign in with your org's SSO")),
    el('p', {}, el('button', { id: 'passkey-sign-in', onclick: passkeySignIn }, 'Sign in with a passkey')),
    el('p', { id: 'sign-in-error', class: 'error' }),
  ))
}

async function passkeySignIn() {
  try {
    const options = await api('POST', '/auth/passkey/options', {})
    const response = await SimpleWebAuthnBrowser.startAuthentication({ optionsJSON: options })
    await api('POST', '/auth/passkey', response)
    location.replace('/')
  } catch (e) {
    document.getElementById('sign-in-error').textContent = e.message
  }
}

async function linkPage() {
  const token = new URLSearchParams(location.hash.slice(1)).get('token')
  history.replaceState(null, '', '/auth/link')
  try {
    await api('POST', '/auth/link', { token })
    location.replace('/')
  } catch (e) {
    show(el('section', {}, el('h2', {}, 'Sign-in link'), fail(e), el('p', {}, 'Links work once and for 15 minutes. Ask your operator for a new one: npx tollgate link --email <you>')))
  }
}

async function invitePage() {
  const token = new URLSearchParams(location.hash.slice(1)).get('token')
  history.replaceState(null, '', '/invite')
  try {
    await loadMe()
    await api('POST', '/api/invites/accept', { token })
    location.replace('/')
  } catch (e) {
    if (e.code !== 'unauthenticated') return show(el('section', {}, el('h2', {}, 'Invite'), fail(e)))
    await api('POST', '/auth/invite', { token })
    show(el('section', {}, el('h2', {}, 'You are invited'), el('p', {}, 'Sign in with the account the invite was sent to.'),
      el('a', { href: '/auth/google' }, el('button', { class: 'primary' }, 'Continue with Google'))))
  }
}

function table(headers, rows) {
  return el('table', {}, el('tr', {}, ...headers.map((h) => el('th', {}, h))), ...rows.map((r) => el('tr', {}, ...r.map((c) => el('td', {}, c)))))
}

async function dashboard(me) {
  $who.replaceChildren(me.user.email, ' ', el('button', { onclick: signOut }, 'Sign out'))
  const instance = await api('GET', '/api/instance')
  if (instance.providers.production.length === 0) {
    $notice.hidden = false
    $notice.textContent = 'No upstream provider is configured: AI requests are answered by the built-in local provider, not by a model.'
  }
  const sections = [await accountSection(me)]
  for (const m of me.memberships) sections.push(await orgSection(m))
  show(...sections)
}

async function accountSection(me) {
  const [sessions, passkeys] = await Promise.all([api('GET', '/api/me/sessions'), api('GET', '/api/me/passkeys')])
  const msg = el('p')
  return el('section', { id: 'account' },
    el('h2', {}, 'Your account'),
    el('p', {}, `Step-up valid until: ${me.session && me.session.step_up_valid_until ? me.session.step_up_valid_until : 'not stepped up'} `, el('button', { onclick: () => stepUp().then(() => location.reload(), (e) => { msg.textContent = e.message }) }, 'Confirm it is me')),
    el('h2', {}, 'Passkeys'),
    table(['id', 'created', 'last used'], passkeys.passkeys.map((k) => [k.id.slice(0, 12) + '…', k.created_at, k.last_used_at || '—'])),
    el('p', {}, el('button', { id: 'add-passkey', onclick: () => addPasskey().then(() => location.reload(), (e) => { msg.textContent = e.message }) }, 'Add a passkey')),
    el('h2', {}, 'Sessions'),
    table(['kind', 'created', 'last seen', 'expires', ''], sessions.sessions.map((s) => [s.kind + (s.current ? ' (this one)' : ''), s.created_at, s.last_seen_at, s.expires_at,
      s.current ? '' : el('button', { onclick: () => api('DELETE', `/api/me/sessions/${s.id}`).then(() => location.reload()) }, 'End')])),
    el('p', {}, el('button', { onclick: () => api('POST', '/api/me/sessions/end-others', {}).then(() => location.reload()) }, 'End all other sessions')),
    msg,
  )
}

async function addPasskey() {
  const options = await api('POST', '/api/me/passkeys/options', {})
  const response = await SimpleWebAuthnBrowser.startRegistration({ optionsJSON: options })
  await api('POST', '/api/me/passkeys', response)
}

async function orgSection(m) {
  const out = el('div')
  const msg = el('p')
  const parts = [el('h2', {}, `${m.slug} — ${m.role}`)]
  const keys = await api('GET', `/api/orgs/${m.org_id}/keys`)
  const env = el('select', {}, el('option', { value: 'sandbox' }, 'sandbox'), el('option', { value: 'production' }, 'production'))
  parts.push(
    el('h2', {}, 'API keys'),
    table(['id', 'environment', 'state', 'label', 'last used', ''], keys.keys.map((k) => [k.id, k.environment, k.state, k.label || '', k.last_used_at || '—',
      k.state === 'revoked' ? '' : el('span', {},
        el('button', { onclick: () => sensitive(() => api('POST', `/api/orgs/${m.org_id}/keys/${k.id}/rotate`, { grace_seconds: 3600 })).then((r) => { out.replaceChildren(el('p', {}, 'New key (shown once):'), el('div', { class: 'secret' }, r.secret)) }, (e) => { msg.textContent = e.message }) }, 'Rotate'),
        ' ',
        el('button', { onclick: () => sensitive(() => api('DELETE', `/api/orgs/${m.org_id}/keys/${k.id}`)).then(() => location.reload(), (e) => { msg.textContent = e.message }) }, 'Revoke'))])),
    el('p', {}, env, ' ', el('button', { class: 'primary', onclick: () => sensitive(() => api('POST', `/api/orgs/${m.org_id}/keys`, { environment: env.value })).then((r) => { out.replaceChildren(el('p', {}, 'New key (shown once):'), el('div', { class: 'secret' }, r.secret)) }, (e) => { msg.textContent = e.message }) }, 'Create key')),
    out,
  )
  if (m.role === 'OWNER' || m.role === 'ADMIN' || m.role === 'ANALYST') {
    const members = await api('GET', `/api/orgs/${m.org_id}/members`)
    parts.push(el('h2', {}, 'Members'), table(['email', 'role', 'joined'], members.members.map((x) => [x.email, x.role, x.joined_at])))
  }
  if (m.role === 'OWNER' || m.role === 'ADMIN') {
    const email = el('input', { placeholder: 'name@example.com', 'aria-label': 'email to invite' })
    const role = el('select', {}, ...['MEMBER', 'ANALYST', 'ADMIN', 'OWNER'].map((r) => el('option', { value: r }, r)))
    parts.push(el('p', {}, email, ' ', role, ' ', el('button', { onclick: () => sensitive(() => api('POST', `/api/orgs/${m.org_id}/invites`, { email: email.value, role: role.value })).then(() => { msg.textContent = 'Invite sent.' }, (e) => { msg.textContent = e.message }) }, 'Invite')))
  }
  parts.push(msg)
  return el('section', { class: 'org' }, ...parts)
}

async function signOut() {
  await fetch('/auth/sign-out', { method: 'POST', credentials: 'same-origin' })
  location.replace('/')
}

async function start() {
  if (location.pathname === '/auth/link') return linkPage()
  if (location.pathname === '/invite') return invitePage()
  try {
    const me = await loadMe()
    await dashboard(me)
  } catch (e) {
    if (e.code === 'unauthenticated') return signInPage()
    show(fail(e))
  }
}

start()
