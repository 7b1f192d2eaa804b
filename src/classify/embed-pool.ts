import { Worker } from 'node:worker_threads'

/** USE-lite vectors have 512 dimensions and are L2-normalised by the model itself. */
export const EMBED_DIMS = 512

export interface EmbedPoolOptions {
  /** Worker threads, each holding one copy of the model (~150 MB). Default 2 (one per core here). */
  readonly workers?: number
  /** Jobs waiting for a worker beyond which `embed` fails fast with `embed_overloaded`. Default 256. */
  readonly maxQueue?: number
  /** Longest wait for one job, queueing included, in ms. Default 5000. */
  readonly timeoutMs?: number
  /** Characters of one text a worker will embed (the classifier cuts inputs to ~64 words first). */
  readonly maxChars?: number
  /**
   * Load the model when the workers start (default), so `ready()` means the model is loaded; or
   * (false) only when first needed — `embed` then waits for it once — saving ~165 MB per worker
   * while no policy needs it. The name finder is ready at start either way.
   */
  readonly preloadModel?: boolean
}

/** A failure of the embedding pool. `code` is all it carries: never input text. */
export class EmbedError extends Error {
  constructor(readonly code: 'embed_overloaded' | 'embed_timeout' | 'embed_closed' | 'embed_failed' | 'model_unavailable' | 'aborted') {
    super(code)
    this.name = 'EmbedError'
  }
}

type JobKind = 'embed' | 'people'
type JobResult = Float32Array[] | [number, number][][]

interface Job {
  readonly id: number
  readonly kind: JobKind
  readonly texts: readonly string[]
  readonly resolve: (v: JobResult) => void
  readonly reject: (e: Error) => void
  readonly signal: AbortSignal | undefined
  readonly onAbort: () => void
  readonly timer: NodeJS.Timeout
  slot?: Slot
}

interface Slot {
  worker: Worker
  /** The worker started (its name finder is warm). */
  ready: boolean
  /** Its model is loaded. */
  model: boolean
  /** A `load-model` was sent (lazy pools). */
  modelAsked: boolean
  busy: Job | undefined
  loadMs: number | undefined
  /** Terminates a worker stuck on one job (it is then replaced). */
  watchdog: NodeJS.Timeout | undefined
}

const WORKER_URL = new URL('./embed.worker.mjs', import.meta.url)

/**
 * A small pool of worker threads running the sentence encoder, so the event loop never blocks
 * on the model. Each worker loads the model once; jobs queue (bounded) and go to the first free
 * worker. A worker that dies is replaced and its job fails with a code. Workers are `unref`'d
 * and the pool holds the process only while someone waits on it, so an idle pool never keeps the
 * process alive; `close()` terminates them all.
 *
 * Texts cross to the workers by structured clone and live in memory only (TRANSIT-1).
 */
export class EmbedPool {
  readonly #slots: Slot[] = []
  readonly #queue: Job[] = []
  readonly #maxQueue: number
  readonly #timeoutMs: number
  readonly #maxChars: number
  #nextId = 1
  #closed = false
  #readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = []
  #modelWaiters: { resolve: () => void; reject: (e: Error) => void }[] = []
  #failed: string | undefined
  #modelFailed: string | undefined
  readonly #preload: boolean
  /** The timer that keeps the process alive while someone waits on the pool (see #holdWhileWanted). */
  #hold: NodeJS.Timeout | undefined

  constructor(opts: EmbedPoolOptions = {}) {
    const n = Math.max(1, Math.floor(opts.workers ?? 2))
    this.#maxQueue = opts.maxQueue ?? 256
    this.#timeoutMs = opts.timeoutMs ?? 5000
    this.#maxChars = opts.maxChars ?? 2000
    this.#preload = opts.preloadModel ?? true
    for (let i = 0; i < n; i++) this.#slots.push(this.#spawn())
  }

  get size(): number {
    return this.#slots.length
  }

  /** Model load time of each worker in ms (undefined while loading, or until first needed). */
  get loadTimes(): readonly (number | undefined)[] {
    return this.#slots.map((s) => s.loadMs)
  }

  /** Whether any worker has the model loaded (a lazy pool loads it on the first `embed`). */
  get modelLoaded(): boolean {
    return this.#slots.some((s) => s.model)
  }

  /**
   * Resolves once at least one worker has started — with its model loaded when the pool preloads
   * it (the default); rejects if none could.
   */
  ready(): Promise<void> {
    if (this.#started()) return Promise.resolve()
    if (this.#closed) return Promise.reject(new EmbedError('embed_closed'))
    if (this.#failed || (this.#preload && this.#modelFailed)) return Promise.reject(new EmbedError('model_unavailable'))
    return new Promise((resolve, reject) => {
      this.#readyWaiters.push({ resolve, reject })
      this.#holdWhileWanted()
    })
  }

  /** Resolves once a worker has the model loaded, asking every worker to load it if none has yet. */
  modelReady(): Promise<void> {
    if (this.modelLoaded) return Promise.resolve()
    if (this.#closed) return Promise.reject(new EmbedError('embed_closed'))
    if (this.#failed || this.#modelFailed) return Promise.reject(new EmbedError('model_unavailable'))
    return new Promise((resolve, reject) => {
      this.#modelWaiters.push({ resolve, reject })
      this.#askForModel()
      this.#holdWhileWanted()
    })
  }

  /** Lazy pools: every started worker that has not been asked yet loads the model. */
  #askForModel(): void {
    if (this.#modelWaiters.length === 0) return
    for (const slot of this.#slots) {
      if (!slot.ready || slot.model || slot.modelAsked) continue
      slot.modelAsked = true
      slot.worker.postMessage({ kind: 'load-model' })
    }
  }

  /** What `ready()` waits for: a started worker, with its model when the pool preloads it. */
  #started(): boolean {
    return this.#slots.some((s) => s.ready && (s.model || !this.#preload))
  }

  #settleWaiters(): void {
    if (this.modelLoaded) for (const w of this.#modelWaiters.splice(0)) w.resolve()
    if (this.#started()) for (const w of this.#readyWaiters.splice(0)) w.resolve()
  }

  /** Resolves once every worker has loaded the model. */
  async allReady(): Promise<void> {
    await this.ready()
    while (this.#slots.some((s) => !s.ready) && !this.#closed && !this.#failed) await new Promise((r) => setTimeout(r, 10))
  }

  #spawn(): Slot {
    const worker = new Worker(WORKER_URL, { workerData: { maxChars: this.#maxChars, preloadModel: this.#preload } })
    const slot: Slot = { worker, ready: false, model: false, modelAsked: this.#preload, busy: undefined, loadMs: undefined, watchdog: undefined }
    worker.on('message', (m: { type?: string; id?: number; ok?: boolean; vectors?: Float32Array; people?: [number, number][][]; code?: string; loadMs?: number }) => {
      if (m.type === 'model') {
        slot.model = true
        slot.loadMs = m.loadMs
        this.#settleWaiters()
        this.#pump()
        return
      }
      if (m.type === 'model-failed') {
        this.#modelFailed = m.code ?? 'model_load_failed'
        for (const w of this.#modelWaiters.splice(0)) w.reject(new EmbedError('model_unavailable'))
        if (this.#preload) for (const w of this.#readyWaiters.splice(0)) w.reject(new EmbedError('model_unavailable'))
        for (const j of this.#queue.filter((q) => q.kind === 'embed')) this.#drop(j, new EmbedError('model_unavailable'))
        this.#holdWhileWanted()
        return
      }
      if (m.type === 'ready') {
        slot.ready = true
        this.#settleWaiters()
        this.#askForModel()
        this.#pump()
        return
      }
      if (m.type === 'failed') {
        this.#failed = m.code ?? 'model_load_failed'
        for (const w of this.#readyWaiters.splice(0)) w.reject(new EmbedError('model_unavailable'))
        for (const j of this.#queue.splice(0)) this.#settle(j, new EmbedError('model_unavailable'))
        this.#holdWhileWanted()
        return
      }
      const job = slot.busy
      if (!job || job.id !== m.id) return
      clearTimeout(slot.watchdog)
      slot.busy = undefined
      job.slot = undefined
      if (m.ok && m.vectors) {
        const out: Float32Array[] = []
        for (let i = 0; i < job.texts.length; i++) out.push(m.vectors.subarray(i * EMBED_DIMS, (i + 1) * EMBED_DIMS))
        this.#settle(job, out)
      } else if (m.ok && m.people) this.#settle(job, m.people)
      else this.#settle(job, new EmbedError(m.code === 'model_unavailable' ? 'model_unavailable' : 'embed_failed'))
      this.#pump()
    })
    // An 'error' event carries the worker's exception; it is dropped (it could quote input) and
    // the worker is replaced below, on 'exit'.
    worker.on('error', () => {})
    worker.on('exit', () => {
      clearTimeout(slot.watchdog)
      const i = this.#slots.indexOf(slot)
      const job = slot.busy
      slot.busy = undefined
      if (job) this.#settle(job, new EmbedError('embed_failed'))
      if (this.#closed || i < 0) return
      if (this.#failed) {
        this.#slots.splice(i, 1)
        return
      }
      this.#slots[i] = this.#spawn()
      this.#holdWhileWanted()
    })
    // Workers never hold the process; #holdWhileWanted's timer does while anyone waits on the pool.
    // After the listeners: adding a 'message' listener refs a worker's port again.
    worker.unref()
    return slot
  }

  /**
   * Embeds texts (each cut to `maxChars`) into unit vectors of EMBED_DIMS floats, in order.
   * Rejects with an EmbedError (a code only) on overload, timeout, abort, or a worker failure.
   */
  embed(texts: readonly string[], signal?: AbortSignal): Promise<Float32Array[]> {
    // A lazy pool loads the model first (once); no job timer runs during the load.
    if (!this.modelLoaded) return this.modelReady().then(() => this.embed(texts, signal))
    return this.#submit('embed', texts, signal) as Promise<Float32Array[]>
  }

  /**
   * Person mentions found by compromise in each text, as raw [start, length] pairs (the PII
   * detector filters them). Same queue, limits and errors as `embed`.
   */
  people(texts: readonly string[], signal?: AbortSignal): Promise<[number, number][][]> {
    return this.#submit('people', texts, signal) as Promise<[number, number][][]>
  }

  #submit(kind: JobKind, texts: readonly string[], signal: AbortSignal | undefined): Promise<JobResult> {
    if (this.#closed) return Promise.reject(new EmbedError('embed_closed'))
    if (this.#failed || (kind === 'embed' && this.#modelFailed)) return Promise.reject(new EmbedError('model_unavailable'))
    if (signal?.aborted) return Promise.reject(new EmbedError('aborted'))
    if (texts.length === 0) return Promise.resolve([])
    if (this.#queue.length >= this.#maxQueue) return Promise.reject(new EmbedError('embed_overloaded'))
    return new Promise((resolve, reject) => {
      const id = this.#nextId++
      // Only the model's input is cut here: the name finder gets the PII detector's own bounded views.
      const cut = kind === 'embed' ? texts.map((t) => (t.length > this.#maxChars ? t.slice(0, this.#maxChars) : t)) : texts
      const job: Job = {
        id, kind, texts: cut, resolve, reject, signal,
        onAbort: () => this.#drop(job, new EmbedError('aborted')),
        timer: setTimeout(() => this.#drop(job, new EmbedError('embed_timeout')), this.#timeoutMs),
      }
      signal?.addEventListener('abort', job.onAbort, { once: true })
      this.#queue.push(job)
      this.#pump()
    })
  }

  /** Abandons a job: dequeued if waiting; if running, its answer is ignored when it arrives. */
  #drop(job: Job, err: EmbedError): void {
    const q = this.#queue.indexOf(job)
    if (q >= 0) this.#queue.splice(q, 1)
    this.#settle(job, err)
    this.#holdWhileWanted()
  }

  #settle(job: Job, result: JobResult | Error): void {
    clearTimeout(job.timer)
    job.signal?.removeEventListener('abort', job.onAbort)
    if (result instanceof Error) job.reject(result)
    else job.resolve(result)
  }

  #pump(): void {
    for (const slot of this.#slots) {
      if (this.#queue.length === 0) break
      if (!slot.ready || slot.busy) continue
      // The first job this worker can run: an embed needs its model loaded.
      const at = this.#queue.findIndex((j) => j.kind === 'people' || slot.model)
      if (at < 0) continue
      const job = this.#queue.splice(at, 1)[0]!
      slot.busy = job
      job.slot = slot
      slot.watchdog = setTimeout(() => void slot.worker.terminate(), 2 * this.#timeoutMs)
      slot.watchdog.unref()
      slot.worker.postMessage({ id: job.id, kind: job.kind, texts: job.texts })
    }
    this.#holdWhileWanted()
  }

  /**
   * Keeps the process alive exactly while someone waits on the pool — a queued or running job, a
   * `ready()` or `modelReady()` caller — and lets it end when the pool is idle, so a command like
   * `tollgate classify` never sees its event loop end halfway. The hold is one ref'd timer, not
   * the workers' own refs: a Worker's ref state also follows its message port's listeners and
   * its start-up, and toggling it per worker let the loop end mid-command under load (a test
   * cancelled with "the event loop has already resolved", twice in full runs).
   */
  #holdWhileWanted(): void {
    const waiting = !this.#closed && (this.#queue.length > 0 || this.#readyWaiters.length > 0 || this.#modelWaiters.length > 0 || this.#slots.some((s) => s.busy))
    if (waiting) this.#hold ??= setInterval(() => {}, 60_000)
    else if (this.#hold) {
      clearInterval(this.#hold)
      this.#hold = undefined
    }
  }

  /** Terminates every worker; pending and queued jobs fail with `embed_closed`. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const w of [...this.#readyWaiters.splice(0), ...this.#modelWaiters.splice(0)]) w.reject(new EmbedError('embed_closed'))
    for (const j of this.#queue.splice(0)) this.#settle(j, new EmbedError('embed_closed'))
    this.#holdWhileWanted()
    await Promise.all(this.#slots.map(async (s) => {
      const job = s.busy
      s.busy = undefined
      clearTimeout(s.watchdog)
      if (job) this.#settle(job, new EmbedError('embed_closed'))
      await s.worker.terminate()
    }))
  }
}
