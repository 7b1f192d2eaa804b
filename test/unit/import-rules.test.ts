// The import rules of ARCHITECTURE.md, enforced by reading every import in src/. The checker is
// a pure function over (path, text) pairs, so it first proves it catches a planted violation of
// every rule (positive control) before it judges the real tree.
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, posix, relative, sep } from 'node:path'
import { test } from 'node:test'
import ts from 'typescript'

const SRC = new URL('../../src', import.meta.url).pathname

export interface SourceFile {
  /** Path relative to src/, with forward slashes (e.g. `keys/keys.repo.ts`). */
  readonly path: string
  readonly text: string
}

export interface Violation {
  readonly rule: 'core' | 'config' | 'steps-gateway' | 'adapters' | 'content-reveal' | 'reveal-elsewhere'
  readonly file: string
  readonly detail: string
}

/** The request-path step folders (ARCHITECTURE.md, "Layout"): they never import gateway/. */
const STEP_FOLDERS = ['keys', 'ratelimit', 'idempotency', 'classify', 'policy', 'friction', 'providers', 'decisions']
/** Adapters never import policy/, friction/ or gateway/. */
const ADAPTERS = ['storage', 'cache', 'providers']
/** Only these may turn Content back into a string. */
const CONTENT_REVEALERS = ['gateway/wire/', 'classify/', 'friction/', 'providers/']
/** Only these may import config/. */
const CONFIG_IMPORTERS = (p: string) => p === 'main.ts' || p === 'deps.ts' || p.startsWith('cli/') || p.startsWith('config/')

/**
 * Files outside CONTENT_REVEALERS that call `.reveal()` on a **Secret** (never on a Content),
 * each with the reason. A new file that reveals a Secret is added here deliberately; a file that
 * imports Content may never reveal anything outside CONTENT_REVEALERS.
 */
export const SECRET_REVEALERS: Readonly<Record<string, string>> = {
  'core/content.ts': 'defines Content.reveal and joinContent (joins without handing the text to the caller)',
  'deps.ts': 'master key, database URL and Redis URL handed to their clients',
  'config/load.ts': 'database and Redis URLs inspected for TLS (D14)',
  'identity/oidc.ts': "the org IdP's client secret, sent to the IdP's token endpoint",
  'ops/routes.ts': 'the operator secret, compared in constant time with X-Backup-Secret',
}

interface Parsed {
  readonly imports: string[]
  /** Line numbers of `.reveal()` calls. */
  readonly reveals: number[]
}

function parse(file: SourceFile): Parsed {
  const sf = ts.createSourceFile(file.path, file.text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS)
  const imports: string[] = []
  const reveals: number[] = []
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      imports.push(node.moduleSpecifier.text)
    } else if (ts.isCallExpression(node)) {
      // import('…') and require('…')
      const [arg] = node.arguments
      if ((node.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(node.expression) && node.expression.text === 'require')) && arg && ts.isStringLiteralLike(arg)) imports.push(arg.text)
      if (ts.isPropertyAccessExpression(node.expression) && node.expression.name.text === 'reveal') {
        reveals.push(sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1)
      }
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      imports.push(node.moduleReference.expression.text)
    }
    ts.forEachChild(node, visit)
  }
  visit(sf)
  return { imports, reveals }
}

/** The src-relative target of a relative import, or undefined for packages (and anything outside src/). */
function resolveImport(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined
  const target = posix.normalize(posix.join(posix.dirname(from), specifier))
  return target.startsWith('../') ? undefined : target
}

const under = (path: string, folder: string) => path.startsWith(`${folder}/`)

export function checkImportRules(files: readonly SourceFile[], secretRevealers: Readonly<Record<string, string>> = SECRET_REVEALERS): Violation[] {
  const out: Violation[] = []
  for (const file of files) {
    const { imports, reveals } = parse(file)
    const targets = imports.map((s) => [s, resolveImport(file.path, s)] as const).filter((x): x is readonly [string, string] => x[1] !== undefined)
    for (const [spec, target] of targets) {
      if (under(file.path, 'core') && !under(target, 'core')) out.push({ rule: 'core', file: file.path, detail: `core/ imports nothing from src/ outside core/, but imports ${spec}` })
      if (under(target, 'config') && !CONFIG_IMPORTERS(file.path)) out.push({ rule: 'config', file: file.path, detail: `only main.ts, deps.ts and cli/ import config/; pass this module its settings as an argument instead of importing ${spec}` })
      if (under(target, 'gateway') && STEP_FOLDERS.some((f) => under(file.path, f))) out.push({ rule: 'steps-gateway', file: file.path, detail: `a step folder never imports gateway/, but this imports ${spec}` })
      for (const forbidden of ['policy', 'friction', 'gateway']) {
        if (under(target, forbidden) && ADAPTERS.some((f) => under(file.path, f))) out.push({ rule: 'adapters', file: file.path, detail: `adapters (storage/, cache/, providers/) never import ${forbidden}/, but this imports ${spec}` })
      }
    }
    if (reveals.length === 0 || CONTENT_REVEALERS.some((f) => file.path.startsWith(f))) continue
    const importsContent = targets.some(([, target]) => target === 'core/content.ts') && file.path !== 'core/content.ts'
    const lines = reveals.join(', ')
    if (importsContent) {
      out.push({ rule: 'content-reveal', file: file.path, detail: `uses Content and calls .reveal() (line ${lines}): only gateway/wire/, classify/, friction/ and providers/ may turn Content into a string` })
    } else if (!(file.path in secretRevealers)) {
      out.push({ rule: 'reveal-elsewhere', file: file.path, detail: `calls .reveal() (line ${lines}) outside gateway/wire/, classify/, friction/ and providers/. Content may not be revealed here; if this reveals a Secret, add the file to SECRET_REVEALERS in test/unit/import-rules.test.ts with the reason` })
    }
  }
  return out
}

function readSrc(dir = SRC): SourceFile[] {
  const out: SourceFile[] = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...readSrc(p))
    else if (/\.(ts|mts|mjs|js)$/.test(name)) out.push({ path: relative(SRC, p).split(sep).join('/'), text: readFileSync(p, 'utf8') })
  }
  return out
}

test('TRANSIT-1: the import-rule checker reports a planted violation of every rule (positive control)', () => {
  const fake: SourceFile[] = [
    // core/ importing outside core/ (static, re-export, dynamic and type-only forms)
    { path: 'core/bad.ts', text: `import { x } from '../keys/key-format.ts'\nexport * from '../audit/audit.ts'\nconst m = await import('../storage/database.ts')\nimport type { Y } from '../gateway/context.ts'\nimport { ok } from './result.ts'\nimport pino from 'pino'` },
    // config/ imported from outside main.ts, deps.ts and cli/
    { path: 'providers/registry.ts', text: `import type { Config } from '../config/load.ts'` },
    { path: 'keys/deep/x.ts', text: `import { loadConfig } from '../../config/load.ts'` },
    // step folders importing gateway/
    { path: 'policy/evaluate.ts', text: `import { handleAiRequest } from '../gateway/pipeline.ts'` },
    { path: 'decisions/writer.ts', text: `import type { GatewayDeps } from '../gateway/pipeline.ts'` },
    // adapters importing policy/, friction/, gateway/
    { path: 'storage/database.ts', text: `import { evaluate } from '../policy/evaluate.ts'` },
    { path: 'cache/redis.ts', text: `import { hold } from '../friction/hold.ts'\nimport { x } from '../gateway/context.ts'` },
    // Content revealed outside the allowed folders
    { path: 'decisions/record.ts', text: `import { Content } from '../core/content.ts'\nexport const f = (c: Content) => c.reveal()` },
    { path: 'deps.ts', text: `import type { Content } from './core/content.ts'\nexport const f = (c: Content) => c.reveal()` },
    // .reveal() in a file that neither imports Content nor is allowlisted (e.g. via an inferred type)
    { path: 'observe/log.ts', text: `import type { ModelRequest } from '../core/model.ts'\nexport const f = (r: ModelRequest) => r.system?.reveal()` },
    // Allowed: the same shapes in their own places
    { path: 'gateway/wire/anthropic.ts', text: `import { Content } from '../../core/content.ts'\nimport { x } from '../pipeline.ts'\nexport const f = (c: Content) => c.reveal()` },
    { path: 'providers/openai/openai.ts', text: `import { Content } from '../../core/content.ts'\nexport const f = (c: Content) => c.reveal()` },
    { path: 'cli/index.ts', text: `import { loadConfig } from '../config/load.ts'\nimport { x } from '../gateway/routes.ts'` },
    { path: 'main.ts', text: `import { loadConfig } from './config/load.ts'` },
    { path: 'config/load.ts', text: `import { Reader } from './schema.ts'\nexport const f = (s: { reveal(): string }) => s.reveal()` },
    { path: 'gateway/pipeline.ts', text: `import { authenticate } from '../keys/authenticate.ts'\nimport { evaluate } from '../policy/evaluate.ts'` },
    { path: 'audit/audit.ts', text: `// mentions .reveal() only in a comment\nconst s = 'x.reveal()'` },
  ]
  const found = checkImportRules(fake)
  const got = found.map((v) => `${v.rule} ${v.file}`).sort()
  assert.deepEqual(got, [
    'adapters cache/redis.ts',
    'adapters cache/redis.ts',
    'adapters storage/database.ts',
    'config keys/deep/x.ts',
    'config providers/registry.ts',
    'content-reveal decisions/record.ts',
    'content-reveal deps.ts',
    'core core/bad.ts',
    'core core/bad.ts',
    'core core/bad.ts',
    'core core/bad.ts',
    'reveal-elsewhere observe/log.ts',
    'steps-gateway decisions/writer.ts',
    'steps-gateway policy/evaluate.ts',
  ].sort(), found.map((v) => `${v.file}: ${v.detail}`).join('\n'))
  assert.ok(found.every((v) => v.detail.length > 20), 'every violation says what to do')
})

test('TRANSIT-1: src/ follows the import rules of ARCHITECTURE.md (core, config, steps, adapters, Content reveals)', () => {
  const files = readSrc()
  assert.ok(files.length > 20 && files.some((f) => f.path === 'core/content.ts'), 'read the real tree')
  const violations = checkImportRules(files)
  assert.deepEqual(violations.map((v) => `${v.file}: ${v.detail}`), [])
  // The allowlist stays honest: every listed file exists and still reveals something.
  for (const path of Object.keys(SECRET_REVEALERS)) {
    const f = files.find((x) => x.path === path)
    assert.ok(f, `SECRET_REVEALERS lists ${path}, which no longer exists: remove it`)
    assert.ok(/\.reveal\(\)/.test(f.text), `SECRET_REVEALERS lists ${path}, which no longer calls .reveal(): remove it`)
  }
})
