import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ContextTokens } from '../src/puppets/ilink/context.js'
import { ILinkError } from '../src/puppets/ilink/errors.js'
import { retryDelay, sleep } from '../src/puppets/ilink/timing.js'

describe('ilink context tokens', () => {
  it('without a scope: the latest token of the user; none at all: refused as a closed window', () => {
    const t = new ContextTokens()
    t.remember('alice', 'A1', ['m1'], 1000)
    t.remember('alice', 'A2', ['m2'], 2000)
    t.remember('bob', 'B1', ['m3'], 1500)
    assert.deepEqual(t.choose('alice'), { token: 'A2', source: 'latest', messageId: 'm2' })
    assert.equal(t.require('bob').token, 'B1')
    assert.equal(t.choose('carol'), null)
    assert.throws(() => t.require('carol'), (e: unknown) => e instanceof ILinkError && e.code === 'no_context_token' && /send window is closed/.test(e.message))
  })

  it('inside withMessage: THAT message’s token, also across awaits; outside again the latest', async () => {
    const t = new ContextTokens()
    t.remember('alice', 'A1', ['m1', 'm1:1'], 1000)
    t.remember('alice', 'A2', ['m2'], 2000)
    const inside = await t.withMessage('m1', async () => {
      await sleep(1)
      await new Promise((resolve) => setImmediate(resolve))
      return t.choose('alice')
    })
    assert.deepEqual(inside, { token: 'A1', source: 'message', messageId: 'm1' })
    assert.equal(await t.withMessage('m1:1', async () => t.choose('alice')?.token), 'A1')
    assert.equal(t.choose('alice')?.token, 'A2')
    // Two replies in flight at once keep their own scope.
    const [a, b] = await Promise.all([
      t.withMessage('m1', async () => (await sleep(5), t.choose('alice')?.token)),
      t.withMessage('m2', async () => t.choose('alice')?.token),
    ])
    assert.deepEqual([a, b], ['A1', 'A2'])
  })

  it('a scope naming another user’s message is refused; an unknown message falls back to the latest', async () => {
    const t = new ContextTokens()
    t.remember('alice', 'A1', ['m1'], 1000)
    t.remember('bob', 'B1', ['m2'], 1000)
    await assert.rejects(t.withMessage('m2', async () => t.choose('alice')), (e: unknown) => e instanceof ILinkError && e.code === 'context_mismatch')
    assert.deepEqual(await t.withMessage('gone', async () => t.choose('alice')), { token: 'A1', source: 'latest', messageId: 'm1' })
  })

  it('an older re-delivered message does not replace a newer token; load/snapshot round-trip', () => {
    const t = new ContextTokens()
    t.remember('alice', 'NEW', ['m2'], 2000)
    t.remember('alice', 'OLD', ['m1'], 1000)
    assert.equal(t.choose('alice')?.token, 'NEW')
    assert.equal(t.withMessage('m1', async () => t.choose('alice')?.token) instanceof Promise, true)
    const copy = new ContextTokens()
    copy.load(t.snapshot())
    assert.equal(copy.choose('alice')?.token, 'NEW')
    copy.clear()
    assert.equal(copy.choose('alice'), null)
  })

  it('the per-message memory is bounded (least recent dropped)', async () => {
    const t = new ContextTokens(3)
    for (let i = 0; i < 5; i++) t.remember('alice', `T${i}`, [`m${i}`], i)
    assert.equal(await t.withMessage('m0', async () => t.choose('alice')?.source), 'latest')
    assert.equal(await t.withMessage('m4', async () => t.choose('alice')?.source), 'message')
  })
})

describe('ilink retry delays', () => {
  it('grow exponentially, are capped, jittered, and never tight', () => {
    const low = (n: number): number => retryDelay(n, 1000, 30_000, () => 0)
    const high = (n: number): number => retryDelay(n, 1000, 30_000, () => 1)
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(high), [1000, 2000, 4000, 8000, 16000, 30000, 30000])
    assert.deepEqual([1, 2, 3].map(low), [500, 1000, 2000])
    for (const n of [1, 10, 100, 1e6, Number.MAX_SAFE_INTEGER, NaN, -5]) {
      for (let i = 0; i < 20; i++) {
        const d = retryDelay(n, 1000, 30_000)
        assert.ok(d >= 500 && d <= 30_000 && Number.isFinite(d), `attempt ${n}: ${d}`)
      }
    }
    const samples = new Set(Array.from({ length: 50 }, () => retryDelay(8, 1000, 30_000)))
    assert.ok(samples.size > 10, 'jittered')
  })

  it('sleep rejects at once when aborted', async () => {
    const controller = new AbortController()
    const started = Date.now()
    const sleeping = sleep(10_000, controller.signal)
    setTimeout(() => controller.abort(), 10)
    await assert.rejects(sleeping, (e: unknown) => e instanceof ILinkError && e.code === 'aborted')
    assert.ok(Date.now() - started < 2_000)
  })
})
