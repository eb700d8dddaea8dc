/** The ding → dong liveness probe, against a fake puppet (main.test.ts runs it on the real mock). */
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { describe, it } from 'node:test'
import type { Wechaty } from 'wechaty'
import { LivenessProbe } from '../src/liveness.js'
import { createLogger, silentLogger } from '../src/log.js'

/** Answers a ding with a dong carrying the same data after `delayMs`, like wechaty-puppet-mock (1 s). */
class FakePuppet extends EventEmitter {
  isLoggedIn = true
  dings = 0
  constructor(public delayMs = 20) {
    super()
  }
  ding(data?: string): void {
    this.dings++
    setTimeout(() => {
      this.emit('dong', { data: 'someone else' }) // other dongs are ignored
      this.emit('dong', { data })
    }, this.delayMs)
  }
}

const botWith = (puppet: unknown): Wechaty => ({ puppet }) as unknown as Wechaty

describe('LivenessProbe', () => {
  it('reports alive with the ding round trip, one probe at a time', async () => {
    const puppet = new FakePuppet(30)
    const probe = new LivenessProbe({ bot: botWith(puppet), timeoutMs: 1_000, log: silentLogger })
    assert.deepEqual(probe.state(), { logged_in: true, alive: true, ding_ms: null }) // nothing measured yet
    const first = probe.probe()
    assert.equal(probe.probe(), first, 'a second call joins the running probe')
    await first
    const state = probe.state()
    assert.deepEqual([state.logged_in, state.alive], [true, true])
    assert.ok(state.ding_ms !== null && state.ding_ms >= 25 && state.ding_ms < 500, `ding_ms ${state.ding_ms}`)
    assert.equal(puppet.dings, 1)
    assert.equal(puppet.listenerCount('dong'), 0, 'the dong listener is removed')
    puppet.isLoggedIn = false
    assert.equal(probe.state().logged_in, false)
  })

  it('reports alive: false when ding goes unanswered (silent stall) or throws, and recovers', async () => {
    const lines: string[] = []
    const log = createLogger('t', { write: (line) => lines.push(line) })
    const puppet = new FakePuppet(10)
    const probe = new LivenessProbe({ bot: botWith(puppet), timeoutMs: 80, log })
    await probe.probe()
    assert.equal(probe.state().alive, true)

    const real = puppet.ding
    puppet.ding = () => {} // what a snippet `bot.puppet.ding = () => {}` does
    const started = Date.now()
    await probe.probe()
    assert.ok(Date.now() - started >= 75)
    assert.deepEqual(probe.state(), { logged_in: true, alive: false, ding_ms: null })
    assert.ok(lines.some((l) => /WARN the Wechaty puppet did not answer a ding \(no dong within 80 ms\)/.test(l)), lines.join(''))

    puppet.ding = () => {
      throw new Error('puppet gone')
    }
    await probe.probe()
    assert.equal(probe.state().alive, false)
    ;(puppet as { ding: unknown }).ding = () => Promise.reject(new Error('rejected'))
    await probe.probe()
    assert.equal(probe.state().alive, false)
    assert.equal(lines.filter((l) => /WARN/.test(l)).length, 1, 'one warning per stall, not per probe')

    puppet.ding = real
    await probe.probe()
    assert.equal(probe.state().alive, true)
    assert.ok(lines.some((l) => /INFO the Wechaty puppet answers again/.test(l)))
    assert.equal(probe.stats.failures, 3)
  })

  it('reports a bot without a puppet as not logged in and not alive', async () => {
    const noPuppet = {
      get puppet(): never {
        throw new Error('NOPUPPET')
      },
    } as unknown as Wechaty
    const probe = new LivenessProbe({ bot: noPuppet, timeoutMs: 100, log: silentLogger })
    await probe.probe()
    assert.deepEqual(probe.state(), { logged_in: false, alive: false, ding_ms: null })
  })

  it('stop() ends a running probe without recording it', async () => {
    const puppet = new FakePuppet()
    puppet.ding = () => {} // never answers
    const probe = new LivenessProbe({ bot: botWith(puppet), timeoutMs: 10_000, log: silentLogger })
    const running = probe.probe()
    probe.stop()
    await running
    assert.deepEqual(probe.state(), { logged_in: true, alive: true, ding_ms: null })
    assert.equal(puppet.listenerCount('dong'), 0)
  })
})
