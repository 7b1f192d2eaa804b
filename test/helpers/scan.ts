import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, fstatSync, lstatSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'

/**
 * Canary markers and the scanner that looks for them in bytes written anywhere (TRANSIT-1,
 * security-tests T01–T03). A "nothing leaked" verdict is only worth something when the same
 * scanner has found planted decoys, so every caller plants positive controls and asserts them.
 *
 * Markers:   TGC-<run>-W<seq>-<16 rnd>            workload (prompts, attachments, headers, …)
 *            TGC-<run>-W<seq>-Ωé漢字🙂-<16 rnd>     workload, non-ASCII (hits \u escaping, UTF-16)
 *            TGC<run>K<seq>x<12 rnd>              workload, alphanumeric only (key-shaped values)
 *            TGC-<run>-D<seq>-<16 rnd>            decoys planted by positive controls
 * <rnd> is random consonants (4 bits each, no digits, no vowels): random hex digits sometimes read
 * as a card or phone number, and vowels as words — and the PII detector or the safety screen would
 * then change a path's decision (a flaky "expected allowed").
 * plus, searched on their own, secrets the run issued (API keys) and decoy secrets (T03).
 * The run id is random per run, so nothing from another run (or the test's source) can match.
 */
const LETTERS = 'bcdfghjklmnpqrst'

/** `bytes` random bytes as consonants, two per byte (as hex would be, without digits or vowels). */
export function randomLetters(bytes: number): string {
  let out = ''
  for (const b of randomBytes(bytes)) out += LETTERS[b >> 4]! + LETTERS[b & 15]!
  return out
}

export type Family = 'workload' | 'workload-key' | 'secret' | 'control'

export interface MarkerInfo {
  readonly marker: string
  readonly family: Family
  /** Where the marker was planted, for failure messages (`native json prompt → openai`). */
  readonly label: string
  /** Searched on its own, not through its family's shared prefix (secrets issued by the app). */
  readonly standalone?: boolean
}

export class Markers {
  readonly run: string
  readonly all = new Map<string, MarkerInfo>()
  #seq = 0

  constructor(run = randomLetters(4)) {
    this.run = run
  }

  #add(marker: string, family: Family, label: string, standalone = false): string {
    this.all.set(marker, { marker, family, label, ...(standalone ? { standalone } : {}) })
    return marker
  }

  #hex(): string {
    return randomLetters(8)
  }

  /** An ASCII workload marker. */
  next(label: string): string {
    return this.#add(`TGC-${this.run}-W${++this.#seq}-${this.#hex()}`, 'workload', label)
  }

  /** A workload marker with non-ASCII characters (BMP and astral), for \u-escaping and UTF-16. */
  nonAscii(label: string): string {
    return this.#add(`TGC-${this.run}-W${++this.#seq}-Ωé漢字🙂-${this.#hex()}`, 'workload', label)
  }

  /** A workload marker of letters and digits only, at most 31 characters (fits a key's base62 secret). */
  alnum(label: string): string {
    return this.#add(`TGC${this.run}K${++this.#seq}x${randomLetters(6)}`, 'workload-key', label)
  }

  /** A decoy for a positive control (optionally with the non-ASCII middle part). */
  decoy(label: string, nonAscii = false): string {
    return this.#add(`TGC-${this.run}-D${++this.#seq}-${nonAscii ? 'Ωé漢字🙂-' : ''}${this.#hex()}`, 'control', label)
  }

  /**
   * A secret the run issued or planted (an API key…): searched like a marker, as its own anchor
   * (T03). At least 12 characters, and random enough to occur nowhere by chance.
   */
  secret(value: string, label: string, control = false): string {
    if (value.length < 12) throw new Error('a secret marker needs at least 12 characters')
    return this.#add(value, control ? 'control' : 'secret', label, true)
  }

  info(marker: string): MarkerInfo | undefined {
    return this.all.get(marker)
  }

  workload(): MarkerInfo[] {
    return [...this.all.values()].filter((m) => m.family !== 'control')
  }
}

/** JSON string escaping of every non-ASCII UTF-16 code unit as \uXXXX (what ensure_ascii encoders write). */
export function jsonEscapeAscii(s: string, upper = false): string {
  let out = ''
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x22) out += '\\"'
    else if (c === 0x5c) out += '\\\\'
    else if (c < 0x20 || c > 0x7e) {
      const h = c.toString(16).padStart(4, '0')
      out += `\\u${upper ? h.toUpperCase() : h}`
    } else out += s[i]
  }
  return out
}

/**
 * The base64 characters that depend only on `bytes` when they start `align` bytes after a
 * 3-byte boundary of the encoded stream: the substring found wherever those bytes are base64ed.
 */
export function base64Aligned(bytes: Buffer, align: 0 | 1 | 2, url = false): string {
  const encoded = Buffer.concat([Buffer.alloc(align), bytes]).toString(url ? 'base64url' : 'base64')
  const first = Math.ceil((8 * align) / 6)
  const last = Math.floor((8 * (align + bytes.length)) / 6)
  return encoded.slice(first, last)
}

export interface Encoded {
  readonly encoding: string
  readonly bytes: Buffer
}

/**
 * Every encoding a marker is searched in: raw UTF-8, JSON \u-escaped (lower/upper hex), base64
 * and base64url at the three alignments, URL-encoded (upper/lower hex), UTF-16LE, hex (lower/upper).
 * Encodings that produce the same bytes as another are listed once.
 */
export function encodingsOf(marker: string): Encoded[] {
  const utf8 = Buffer.from(marker, 'utf8')
  const pct = encodeURIComponent(marker)
  const list: [string, string | Buffer][] = [
    ['utf8', utf8],
    ['json-u', jsonEscapeAscii(marker)],
    ['json-U', jsonEscapeAscii(marker, true)],
    ['url', pct],
    ['url-lower', pct.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase())],
    ['utf16le', Buffer.from(marker, 'utf16le')],
    ['hex', utf8.toString('hex')],
    ['HEX', utf8.toString('hex').toUpperCase()],
  ]
  for (const a of [0, 1, 2] as const) {
    list.push([`base64@${a}`, base64Aligned(utf8, a)])
    list.push([`base64url@${a}`, base64Aligned(utf8, a, true)])
  }
  const seen = new Set<string>()
  const out: Encoded[] = []
  for (const [encoding, v] of list) {
    const bytes = typeof v === 'string' ? Buffer.from(v, 'latin1') : v
    const k = bytes.toString('hex')
    if (seen.has(k)) continue
    seen.add(k)
    out.push({ encoding, bytes })
  }
  return out
}

interface Needle {
  readonly marker: string
  readonly family: Family
  readonly encoding: string
  readonly bytes: Buffer
}

interface Anchor {
  readonly bytes: Buffer
  readonly needles: Needle[]
  readonly families: Set<Family>
  /** Needles by the `keyLength` bytes that follow the anchor: a hit is compared with a few needles, not all. */
  byNext: Map<string, Needle[]>
  keyLength: number
}

export interface Hit {
  readonly source: string
  readonly location: string
  readonly marker: string
  readonly family: Family
  readonly encoding: string
  readonly offset: number
}

/** The run's marker prefix found where no whole marker is: a truncated or split copy. */
export interface PartialHit {
  readonly source: string
  readonly location: string
  readonly families: readonly Family[]
  readonly offset: number
}

export interface SourceReport {
  readonly source: string
  bytes: number
  items: number
  hits: number
  partials: number
  readonly notes: string[]
}

function commonPrefix(a: Buffer, b: Buffer): Buffer {
  let i = 0
  while (i < a.length && i < b.length && a[i] === b[i]) i++
  return a.subarray(0, i)
}

const CHUNK = 16 * 1024 * 1024
let readBuffer: Buffer | undefined
/** Hits kept with their location, per source (every hit is still counted and remembered in `found`). */
const MAX_STORED_HITS = 20_000

/**
 * Multi-marker, multi-encoding search over bytes. For speed it searches one anchor per
 * (family, encoding) — the longest prefix all that family's needles share, which contains the
 * random run id — and compares whole needles only where an anchor occurs. An anchor occurrence
 * that is not the start of a whole marker is reported as a partial hit (a truncated copy).
 */
export class MarkerScanner {
  readonly #anchors: Anchor[]
  readonly #maxLen: number
  readonly #sources = new Map<string, SourceReport>()
  /** source → `marker\0encoding` of everything found there (uncapped). */
  readonly #found = new Map<string, Set<string>>()
  readonly hits: Hit[] = []
  readonly partials: PartialHit[] = []
  /** Every hit counted, including those not stored once MAX_STORED_HITS is reached. */
  hitCount = 0

  constructor(markers: readonly MarkerInfo[]) {
    const groups = new Map<string, Needle[]>()
    for (const m of markers) {
      for (const e of encodingsOf(m.marker)) {
        const k = `${m.family}\0${e.encoding}${m.standalone ? `\0${m.marker}` : ''}`
        const g = groups.get(k) ?? []
        g.push({ marker: m.marker, family: m.family, encoding: e.encoding, bytes: e.bytes })
        groups.set(k, g)
      }
    }
    const byAnchor = new Map<string, Anchor>()
    let maxLen = 1
    for (const needles of groups.values()) {
      let anchor = needles[0]!.bytes
      for (const n of needles) {
        anchor = commonPrefix(anchor, n.bytes)
        maxLen = Math.max(maxLen, n.bytes.length)
      }
      // The anchor must carry the run id, or it would match unrelated bytes everywhere.
      if (anchor.length < 12) throw new Error(`marker anchor too short (${anchor.length} bytes) for ${needles[0]!.family}/${needles[0]!.encoding}`)
      const k = anchor.toString('hex')
      const a: Anchor = byAnchor.get(k) ?? { bytes: Buffer.from(anchor), needles: [], families: new Set<Family>(), byNext: new Map<string, Needle[]>(), keyLength: 0 }
      a.needles.push(...needles)
      a.families.add(needles[0]!.family)
      byAnchor.set(k, a)
    }
    this.#anchors = [...byAnchor.values()]
    for (const a of this.#anchors) {
      a.keyLength = 8
      for (const n of a.needles) a.keyLength = Math.min(a.keyLength, n.bytes.length - a.bytes.length)
      for (const n of a.needles) {
        const key = n.bytes.subarray(a.bytes.length, a.bytes.length + a.keyLength).toString('latin1')
        const list = a.byNext.get(key)
        if (list) list.push(n)
        else a.byNext.set(key, [n])
      }
    }
    this.#maxLen = maxLen
  }

  get anchorCount(): number {
    return this.#anchors.length
  }

  source(name: string): SourceReport {
    let s = this.#sources.get(name)
    if (!s) {
      s = { source: name, bytes: 0, items: 0, hits: 0, partials: 0, notes: [] }
      this.#sources.set(name, s)
    }
    return s
  }

  note(source: string, text: string): void {
    this.source(source).notes.push(text)
  }

  reports(): SourceReport[] {
    return [...this.#sources.values()]
  }

  /** Scans one in-memory item (a log, a row dump, a key's value…). */
  scan(source: string, location: string, data: Buffer | string): void {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
    const s = this.source(source)
    s.items++
    s.bytes += buf.length
    this.#window(s, location, buf, 0, buf.length)
    this.#decoded(source, location, buf)
  }

  /** Scans a file in chunks (bounded memory), and its decompressed view when it is gzip. False when unreadable. */
  scanFile(source: string, path: string, location = path): boolean {
    let fd: number
    try {
      fd = openSync(path, 'r')
    } catch {
      this.note(source, `unreadable: ${path}`)
      return false
    }
    try {
      if (!fstatSync(fd).isFile()) return false
      const s = this.source(source)
      s.items++
      let carry = Buffer.alloc(0)
      let base = 0
      // One read buffer for every file (windows are copies): allocating 16 MB per small file costs seconds.
      readBuffer ??= Buffer.allocUnsafe(CHUNK)
      const chunk = readBuffer
      let head: Buffer | undefined
      for (;;) {
        const n = readSync(fd, chunk, 0, CHUNK, null)
        const window = n > 0 ? Buffer.concat([carry, chunk.subarray(0, n)]) : carry
        if (head === undefined) head = Buffer.from(window.subarray(0, 4))
        s.bytes += n
        if (n === 0) {
          this.#window(s, location, window, base, window.length)
          break
        }
        const limit = Math.max(0, window.length - (this.#maxLen - 1))
        this.#window(s, location, window, base, limit)
        carry = Buffer.from(window.subarray(limit))
        base += limit
      }
      if (head && head[0] === 0x1f && head[1] === 0x8b) {
        try {
          this.#decoded(source, location, readFileSync(path))
        } catch {
          // a file that vanished or changed meanwhile: its raw bytes were scanned
        }
      }
      return true
    } finally {
      closeSync(fd)
    }
  }

  /** Views of an item that are not its raw bytes: the decompressed content of gzip data. */
  #decoded(source: string, location: string, buf: Buffer): void {
    const s = this.source(source)
    if (buf.length > 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
      try {
        const plain = gunzipSync(buf)
        s.bytes += plain.length
        this.#window(s, `${location}#gunzip`, plain, 0, plain.length)
      } catch {
        // not really gzip
      }
    }
  }

  #window(s: SourceReport, location: string, buf: Buffer, base: number, limit: number): void {
    const found: { start: number; end: number }[] = []
    const unmatched: { pos: number; anchor: Anchor }[] = []
    for (const a of this.#anchors) {
      let pos = buf.indexOf(a.bytes)
      while (pos !== -1 && pos < limit) {
        let matched = false
        const next = buf.subarray(pos + a.bytes.length, pos + a.bytes.length + a.keyLength).toString('latin1')
        for (const n of a.byNext.get(next) ?? []) {
          if (pos + n.bytes.length <= buf.length && buf.subarray(pos, pos + n.bytes.length).equals(n.bytes)) {
            matched = true
            found.push({ start: pos, end: pos + n.bytes.length })
            this.hitCount++
            s.hits++
            if (s.hits <= MAX_STORED_HITS) this.hits.push({ source: s.source, location, marker: n.marker, family: n.family, encoding: n.encoding, offset: base + pos })
            let f = this.#found.get(s.source)
            if (!f) this.#found.set(s.source, (f = new Set()))
            f.add(`${n.marker}\0${n.encoding}`)
          }
        }
        if (!matched) unmatched.push({ pos, anchor: a })
        pos = buf.indexOf(a.bytes, pos + 1)
      }
    }
    for (const u of unmatched) {
      if (found.some((f) => f.start <= u.pos && u.pos < f.end)) continue
      s.partials++
      if (s.partials <= MAX_STORED_HITS) this.partials.push({ source: s.source, location, families: [...u.anchor.families], offset: base + u.pos })
    }
  }

  hitsOf(marker: string, source?: string): Hit[] {
    return this.hits.filter((h) => h.marker === marker && (source === undefined || h.source === source))
  }

  /** Whether `marker` was found in `source` (through one of `encodings`, when given). Not capped. */
  found(marker: string, source: string, encodings?: readonly string[]): boolean {
    const f = this.#found.get(source)
    if (!f) return false
    if (!encodings) {
      for (const k of f) if (k.startsWith(`${marker}\0`)) return true
      return false
    }
    return encodings.some((e) => f.has(`${marker}\0${e}`))
  }
}

export interface WalkOptions {
  /** Only files whose mtime or ctime is at or after this (ms since the epoch). */
  readonly sinceMs?: number
  /** Paths (prefixes) not to enter. */
  readonly exclude?: readonly string[]
  readonly maxDepth?: number
  readonly maxFiles?: number
}

export interface WalkResult {
  readonly files: { readonly path: string; readonly size: number }[]
  /** Directories that could not be listed, and whether the file limit cut the walk short. */
  readonly unreadable: string[]
  truncated: boolean
}

/** Regular files under `root` (symlinks not followed; sockets, FIFOs and devices skipped). */
export function walkFiles(root: string, opts: WalkOptions = {}): WalkResult {
  const out: WalkResult = { files: [], unreadable: [], truncated: false }
  const maxDepth = opts.maxDepth ?? 12
  const maxFiles = opts.maxFiles ?? 50_000
  const excluded = (p: string) => (opts.exclude ?? []).some((e) => p === e || p.startsWith(e.endsWith('/') ? e : `${e}/`))
  const visit = (dir: string, depth: number) => {
    if (depth > maxDepth || out.truncated || excluded(dir)) return
    let names: string[]
    try {
      names = readdirSync(dir)
    } catch {
      out.unreadable.push(dir)
      return
    }
    for (const name of names) {
      const p = join(dir, name)
      if (excluded(p)) continue
      let st
      try {
        st = lstatSync(p)
      } catch {
        continue // removed meanwhile
      }
      if (st.isDirectory()) visit(p, depth + 1)
      else if (st.isFile()) {
        if (opts.sinceMs !== undefined && st.mtimeMs < opts.sinceMs && st.ctimeMs < opts.sinceMs) continue
        if (out.files.length >= maxFiles) {
          out.truncated = true
          return
        }
        out.files.push({ path: p, size: st.size })
      }
    }
  }
  visit(root, 0)
  return out
}

export interface StraceWrite {
  readonly path: string
  readonly syscall: string
  readonly data: Buffer
}

function unescapeHex(s: string): Buffer {
  // strace -xx prints every byte as \xHH; anything else is literal.
  if (/^(?:\\x[0-9a-f]{2})*$/.test(s)) return Buffer.from(s.replaceAll('\\x', ''), 'hex')
  const bytes: number[] = []
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && s[i + 1] === 'x') {
      bytes.push(Number.parseInt(s.slice(i + 2, i + 4), 16))
      i += 3
    } else bytes.push(s.charCodeAt(i) & 0xff)
  }
  return Buffer.from(bytes)
}

const WRITE_CALL = /^(?:\[pid\s+\d+\]\s+|\d+\s+)?(write|pwrite64|writev|pwritev|pwritev2)\(\d+<([^>]*)>, /
const QUOTED = /"((?:\\x[0-9a-f]{2})*)"/g

/**
 * The data of every write(2)-family call made on a file descriptor that resolves to a path
 * (not a socket, pipe or anonymous inode), from `strace -f -y -xx` output.
 */
export function straceFileWrites(log: string): StraceWrite[] {
  const out: StraceWrite[] = []
  let start = 0
  while (start < log.length) {
    let end = log.indexOf('\n', start)
    if (end === -1) end = log.length
    // Only the head of the line is matched first: socket writes (most of the bytes) are skipped unparsed.
    const head = log.slice(start, Math.min(end, start + 4096))
    const m = WRITE_CALL.exec(head)
    if (m) {
      const path = unescapeHex(m[2]!).toString('utf8')
      if (path.startsWith('/')) {
        const parts: Buffer[] = []
        for (const q of log.slice(start + m[0].length, end).matchAll(QUOTED)) parts.push(unescapeHex(q[1]!))
        out.push({ path, syscall: m[1]!, data: Buffer.concat(parts) })
      }
    }
    start = end + 1
  }
  return out
}

export interface WriteTrace {
  /** Detaches strace and returns its output path. */
  stop(): Promise<string>
}

/**
 * Attaches `strace -f` to a running process (every thread, and threads created later) and records
 * the bytes of every write-family call with the fd's path. Undefined when strace is missing or
 * may not attach (no CAP_SYS_PTRACE, Yama ptrace_scope), with the reason.
 */
export async function traceFileWrites(pid: number, outFile: string, timeoutMs = 10_000): Promise<WriteTrace | string> {
  let child: ChildProcess
  try {
    child = spawn('strace', ['-f', '-y', '-xx', '-s', '65536', '-e', 'trace=write,pwrite64,writev,pwritev,pwritev2', '-o', outFile, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (err) {
    return `strace could not start: ${(err as Error).message}`
  }
  let stderr = ''
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code))
    child.once('error', () => resolve(-1))
  })
  const attached = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs)
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString('utf8')
      if (/Process \d+ attached/.test(stderr)) {
        clearTimeout(timer)
        resolve(true)
      }
    })
    void exited.then(() => {
      clearTimeout(timer)
      resolve(false)
    })
  })
  if (!attached) {
    child.kill('SIGKILL')
    await exited
    return `strace could not attach: ${stderr.trim().split('\n').slice(-1)[0] ?? 'no output'}`
  }
  // strace reports each thread it attaches; give it a moment to finish attaching all of them.
  await new Promise((r) => setTimeout(r, 200))
  let stopped: Promise<string> | undefined
  return {
    stop() {
      stopped ??= (async () => {
        child.kill('SIGINT')
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
        await exited
        clearTimeout(timer)
        return outFile
      })()
      return stopped
    },
  }
}
