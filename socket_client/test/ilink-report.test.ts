import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { format } from 'node:util'
import { silentLogger } from '../src/log.js'
import { ILinkError } from '../src/puppets/ilink/errors.js'
import { ErrorReporter } from '../src/puppets/ilink/report.js'

describe('ilink error reporting is rate-limited', () => {
  it('one report per streak and state change; repeats at most once per interval, with a count', () => {
    let now = 0
    const emitted: Error[] = []
    const infos: string[] = []
    const reporter = new ErrorReporter({
      emit: (e) => emitted.push(e),
      log: { ...silentLogger, info: (...args: unknown[]) => infos.push(format(...args)) },
      intervalMs: 60_000,
      now: () => now,
    })
    const http500 = (): ILinkError => new ILinkError('getupdates: HTTP 500', { code: 'http_500', endpoint: 'getupdates' })
    for (let i = 0; i < 100; i++) {
      reporter.failure('getupdates', http500())
      now += 1_000 // a retry every second for 100 s
    }
    assert.equal(emitted.length, 2) // at 0 s and at 60 s
    assert.match(emitted[1]!.message, /getupdates: HTTP 500 \(failed 60 more times in the last 60 s; still retrying\)/)
    assert.equal((emitted[1] as { code?: unknown }).code, 'http_500')
    reporter.failure('getupdates', new ILinkError('getupdates: no answer within 40000 ms', { code: 'timeout', endpoint: 'getupdates' }))
    assert.equal(emitted.length, 3) // what fails changed: reported at once
    reporter.failure('sendtyping', http500())
    assert.equal(emitted.length, 4) // another key has its own streak
    assert.equal(reporter.failures('getupdates'), 101)
    reporter.recovered('getupdates')
    assert.equal(reporter.failures('getupdates'), 0)
    assert.match(infos[0]!, /getupdates works again after 101 failed attempts/)
    reporter.failure('getupdates', http500())
    assert.equal(emitted.length, 5) // a new streak is reported again
  })

  it('a throwing listener does not break the reporter', () => {
    const reporter = new ErrorReporter({ emit: () => { throw new Error('listener') }, log: silentLogger })
    reporter.failure('x', new Error('boom'))
    assert.equal(reporter.emitted, 1)
  })
})
