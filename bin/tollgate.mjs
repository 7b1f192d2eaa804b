#!/usr/bin/env node
// `tollgate …` (npm start, npx tollgate): the compiled build in dist/ when it matches src/, else
// the TypeScript sources through tsx's loader (see build-state.mjs).
import { fileURLToPath } from 'node:url'
import { chooseEntry } from './build-state.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
if (chooseEntry(root) === 'dist') {
  await import('../dist/main.js')
} else {
  if (process.argv[2] === 'serve') {
    process.stderr.write('tollgate: running from the TypeScript sources (dist/ is missing or older than src/); `npm run build` makes it start faster and use ~100 MB less memory\n')
  }
  const { register } = await import('tsx/esm/api')
  register()
  await import('../src/main.ts')
}
