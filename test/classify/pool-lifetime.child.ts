// Child of pool-lifetime.test.ts: uses an embedding pool the way `tollgate classify` does — calls
// in flight while the workers start and load the model — with nothing else holding the event
// loop, then prints what it got. The pool alone must keep the process alive until then, and let it
// end afterwards.
import { EmbedPool } from '../../src/classify/embed-pool.ts'

const pool = new EmbedPool({ workers: 2 })
const names = pool.ready().then(() => pool.people(['Please write to Mr. John Smith.', 'nothing here']))
const vectors = pool.ready().then(() => pool.embed(['How do I sort a list in Python?']))
void Promise.all([names, vectors]).then(([people, [v]]) => process.stdout.write(`${JSON.stringify({ people, dims: v?.length })}\n`))
