import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { FileBox } from 'file-box'
import { Executor, compileSnippet } from '../src/executor.js'
import { createLogger, rateLimitedLogger, silentLogger, type Logger } from '../src/log.js'
import type { ExecResponse, WireError } from '../src/protocol.js'
import { sleep } from './helpers.js'

const newExecutor = (options: { cacheSize?: number; maxResultBytes?: number } = {}): Executor =>
  new Executor({ bot: null, log: silentLogger, ...options })

function errorOf(response: ExecResponse): WireError {
  assert.equal(response.ok, false, `expected a failure, got ${JSON.stringify(response)}`)
  return (response as { ok: false; error: WireError }).error
}

describe('Executor success', () => {
  const hostile = [
    'back`tick`s',
    '${process.exit(1)}',
    '`${process.exit(1)}`',
    '"double" \'single\' \\backslash\\ \\n literal',
    'line1\nline2\r\nline3\u2028\u2029',
    'emoji 🤖👍🏽 and 中文',
    '</script><script>alert(1)</script>',
    '\u0000nul and \uD800 lone surrogate',
    '}); process.exit(1); ({',
  ]

  it('returns hostile string args byte for byte (a lone surrogate becomes U+FFFD: results are valid text)', async () => {
    const executor = newExecutor()
    for (const s of hostile) {
      const expected = s.replace('\uD800', '\uFFFD')
      assert.deepEqual(await executor.run({ code: 'return args.s', args: { s: s } }), { ok: true, result: expected })
    }
  })

  it('returns a 1 MB string unchanged', async () => {
    const big = 'x🙂"`$'.repeat(200_000)
    const response = await newExecutor().run({ code: 'return args.big', args: { big } })
    assert.equal(response.ok, true)
    assert.equal((response as { result: string }).result, big)
  })

  it('returns structured args back as JSON', async () => {
    const args = { list: [1, 'two', null, true], nested: { deep: { s: hostile } } }
    const expected = { ...args, nested: { deep: { s: hostile.map((s) => s.replace('\uD800', '\uFFFD')) } } }
    assert.deepEqual(await newExecutor().run({ code: 'return args', args }), { ok: true, result: expected })
  })

  it('accepts TypeScript and await', async () => {
    const code = [
      'interface Point { x: number; y: number }',
      'const p: Point = { x: args.x as number, y: 2 }',
      'await new Promise<void>((resolve) => setImmediate(resolve))',
      'return p.x + p.y',
    ].join('\n')
    assert.deepEqual(await newExecutor().run({ code, args: { x: 40 } }), { ok: true, result: 42 })
  })

  it('gives the snippet bot, args, FileBox, log, mocker and mock', async () => {
    const response = await newExecutor().run({
      code: 'return [bot, typeof args, FileBox.name, typeof log.info, mocker, mock]',
    })
    assert.deepEqual(response, { ok: true, result: [null, 'object', FileBox.name, 'function', null, null] })
  })

  it('turns undefined into null', async () => {
    assert.deepEqual(await newExecutor().run({ code: 'return undefined' }), { ok: true, result: null })
    assert.deepEqual(await newExecutor().run({ code: 'args.x = 1' }), { ok: true, result: null })
  })
})

describe('Executor errors', () => {
  it('reports syntax errors as compile errors with a position inside the snippet', async () => {
    const error = errorOf(await newExecutor().run({ code: 'const a = 1\nconst b = ;\nreturn a' }))
    assert.equal(error.kind, 'compile')
    assert.equal(error.name, 'SyntaxError')
    assert.match(error.message, /^snippet:2:11: Unexpected ";"/)
    assert.equal(error.stack, null)
  })

  it('rejects code a plain transpiler would let through', async () => {
    const error = errorOf(await newExecutor().run({ code: 'return (' }))
    assert.equal(error.kind, 'compile')
    assert.match(error.message, /^snippet:1:\d+: /)
  })

  it('refuses a snippet that closes its function body early, without running it', async () => {
    const error = errorOf(await newExecutor().run({ code: '}; globalThis.escaped = true; {' }))
    assert.equal(error.kind, 'compile')
    assert.match(error.message, /unbalanced '}'/)
    assert.equal((globalThis as { escaped?: boolean }).escaped, undefined)
  })

  it('keeps braces inside strings, templates and comments', async () => {
    const code = '/* } */ const t: string = `}${args.x}{`; return t + "}" // }'
    assert.deepEqual(await newExecutor().run({ code, args: { x: 1 } }), { ok: true, result: '}1{}' })
  })

  it('reports a thrown Error as a runtime error with its name, message and stack', async () => {
    const error = errorOf(await newExecutor().run({ code: 'throw new TypeError("boom: " + args.why)', args: { why: 'because' } }))
    assert.equal(error.kind, 'runtime')
    assert.equal(error.name, 'TypeError')
    assert.equal(error.message, 'boom: because')
    assert.match(error.stack ?? '', /TypeError: boom: because/)
  })

  it('carries a thrown error’s numeric or string code (ilink -2 / -14), and only then', async () => {
    const executor = newExecutor()
    const numeric = errorOf(await executor.run({ code: 'throw Object.assign(new Error("sendmessage refused (ret=-2)"), { code: -2 })' }))
    assert.equal(numeric.code, -2)
    assert.equal(numeric.message, 'sendmessage refused (ret=-2)')
    const text = errorOf(await executor.run({ code: 'class ILinkError extends Error { code = "no_context_token" }; throw new ILinkError("window closed")' }))
    assert.equal(text.code, 'no_context_token')
    const plain = errorOf(await executor.run({ code: 'throw new Error("no code")' }))
    assert.equal('code' in plain, false)
    for (const code of ['{ code: { nested: 1 } }', '{ code: "" }', '{ code: NaN }', '{ code: null }']) {
      const odd = errorOf(await executor.run({ code: `throw Object.assign(new Error("x"), ${code})` }))
      assert.equal('code' in odd, false, code)
    }
    // The rest of the wire error is unchanged.
    assert.deepEqual(Object.keys(numeric).sort(), ['code', 'kind', 'message', 'name', 'stack'])
  })

  it('reports thrown non-Error values readably', async () => {
    const executor = newExecutor()
    const cases: Array<[string, RegExp]> = [
      ['throw "plain string"', /^plain string$/],
      ['throw { code: 42, why: "nope" }', /code: 42.*why: 'nope'/],
      ['throw undefined', /^undefined$/],
      ['throw 7', /^7$/],
    ]
    for (const [code, message] of cases) {
      const error = errorOf(await executor.run({ code }))
      assert.equal(error.kind, 'runtime')
      assert.equal(error.name, 'NonError')
      assert.match(error.message, message)
      assert.equal(error.stack, null)
    }
  })

  it('times out a snippet that never finishes', async () => {
    const started = performance.now()
    const error = errorOf(await newExecutor().run({ code: 'await new Promise(() => {})', timeout_ms: 150 }))
    const elapsed = performance.now() - started
    assert.equal(error.kind, 'timeout')
    assert.equal(error.name, 'SnippetTimeout')
    assert.equal(error.message, 'snippet did not finish within 150 ms')
    // the upper bound is generous: a busy 2-core machine delays timers; a hang would be far longer
    assert.ok(elapsed >= 145 && elapsed < 1000, `took ${elapsed} ms`)
  })

  it('reports a result that cannot be serialised as a serialize error', async () => {
    const error = errorOf(await newExecutor({ maxResultBytes: 1000 }).run({ code: 'return "x".repeat(5000)' }))
    assert.equal(error.kind, 'serialize')
    assert.equal(error.name, 'SerializeError')
    assert.match(error.message, /too large/)
  })

  it('rejects malformed requests as bad_request', async () => {
    const executor = newExecutor()
    const cases: Array<[unknown, RegExp]> = [
      [null, /must be an object/],
      ['return 1', /must be an object/],
      [{}, /code must be a non-empty string/],
      [{ code: '' }, /code must be a non-empty string, got an empty string/],
      [{ code: '   ' }, /code must be a non-empty string/],
      [{ code: 42 }, /code must be a non-empty string/],
      [{ code: 'return 1', timeout_ms: 0 }, /timeout_ms must be a positive number/],
      [{ code: 'return 1', timeout_ms: -5 }, /timeout_ms/],
      [{ code: 'return 1', timeout_ms: Number.NaN }, /timeout_ms/],
      [{ code: 'return 1', timeout_ms: Infinity }, /timeout_ms/],
      [{ code: 'return 1', timeout_ms: '100' }, /timeout_ms/],
      [{ code: 'return 1', timeout_ms: 24 * 3600 * 1000 + 1 }, /timeout_ms/],
    ]
    for (const [req, message] of cases) {
      const error = errorOf(await executor.run(req))
      assert.equal(error.kind, 'bad_request', JSON.stringify(req))
      assert.equal(error.name, 'BadRequest')
      assert.match(error.message, message)
    }
    assert.equal(executor.stats.compiles, 0)
  })
})

describe('Executor cache', () => {
  it('compiles a repeated snippet once and reuses the same function', async () => {
    const executor = newExecutor()
    const code = 'return args.x'
    const first = executor.compile(code)
    assert.equal(typeof first, 'function')
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(await executor.run({ code, args: { x: i } }), { ok: true, result: i })
    }
    assert.equal(executor.compile(code), first)
    assert.equal(executor.stats.compiles, 1)
    assert.equal(executor.stats.hits, 6)
  })

  it('drops the least recently used snippet when full', () => {
    const executor = newExecutor({ cacheSize: 2 })
    const a = executor.compile('return 1')
    executor.compile('return 2')
    assert.equal(executor.compile('return 1'), a) // refreshes "return 1"
    executor.compile('return 3') // evicts "return 2"
    assert.equal(executor.compile('return 1'), a)
    assert.equal(executor.stats.compiles, 3)
    executor.compile('return 2')
    assert.equal(executor.stats.compiles, 4)
  })

  it('compileSnippet returns a compile error instead of throwing', () => {
    const result = compileSnippet('let = ')
    assert.equal(typeof result, 'object')
    assert.equal((result as WireError).kind, 'compile')
  })
})

describe('Executor hardening', () => {
  const capture = (): { log: Logger; lines: string[] } => {
    const lines: string[] = []
    return { log: createLogger('t', { level: 'debug', write: (line) => lines.push(line) }), lines }
  }

  it('rate-limits the log snippets see: a flood costs little and is summarised', async () => {
    const { log, lines } = capture()
    const snippetLog = rateLimitedLogger(log, { maxLines: 100, windowMs: 300 })
    const executor = new Executor({ bot: null, log, snippetLog })
    const started = performance.now()
    const response = await executor.run({
      code: 'for (let i = 0; i < 1e5; i++) log.info("flood %d %o", i, { big: "x".repeat(100) }); return "done"',
    })
    const elapsed = performance.now() - started
    assert.deepEqual(response, { ok: true, result: 'done' })
    assert.ok(elapsed < 2_000, `1e5 log calls took ${elapsed} ms`) // ~50 ms unloaded: they are counted, not formatted
    assert.match(lines[0]!, /INFO flood 0 /)
    await sleep(350) // the window ends: its summary line follows
    const printed = lines.filter((l) => / INFO flood /.test(l)).length
    const summaries = lines.filter((l) => / WARN \d+ log lines suppressed/.test(l))
    const suppressed = summaries.reduce((sum, l) => sum + Number(/WARN (\d+) log/.exec(l)![1]), 0)
    const windows = Math.ceil(elapsed / 300) + 1
    assert.ok(printed >= 100 && printed <= 100 * windows, `${printed} lines printed in ${elapsed} ms`)
    assert.equal(printed + suppressed, 1e5)
    assert.ok(summaries.length >= 1 && summaries.length <= windows)
    assert.match(summaries[0]!, /WARN \d+ log lines suppressed \(snippet log limit: 100 lines per 300 ms\)/)
    assert.equal(lines.length, printed + summaries.length)
    await executor.run({ code: 'log.warn("back to normal")' })
    assert.match(lines.at(-1)!, /WARN back to normal/)
  })

  it('limits snippet logs to 100 lines per second by default and cuts huge lines', async () => {
    const { log, lines } = capture()
    const executor = new Executor({ bot: null, log })
    await executor.run({ code: 'log.info("x".repeat(100000)); for (let i = 0; i < 500; i++) log.debug("d")' })
    assert.equal(lines.length, 100)
    assert.match(lines[0]!, /x{8192}… \(91808 more characters\)\n$/)
  })

  it('survives hostile thrown values and results', async () => {
    const executor = newExecutor({ maxResultBytes: 1_000_000 })
    const hostileProxy = 'new Proxy({}, { get() { throw new Error("trap") }, getPrototypeOf() { throw new Error("trap") }, ownKeys() { throw new Error("trap") } })'
    const thrown = errorOf(await executor.run({ code: `throw ${hostileProxy}` }))
    assert.equal(thrown.kind, 'runtime')
    assert.equal(thrown.name, 'NonError')

    const huge = errorOf(await executor.run({ code: 'throw "e".repeat(1_000_000)' }))
    assert.ok(huge.message.length < 70_000, `message of ${huge.message.length} characters`)
    assert.match(huge.message, /… \(\d+ more characters\)$/)

    // Returning it: awaiting reads `.then`, which throws, so the snippet itself fails.
    assert.equal(errorOf(await executor.run({ code: `return ${hostileProxy}` })).kind, 'runtime')
    const keysTrap = 'new Proxy({}, { ownKeys() { throw new Error("no keys for you") } })'
    const unreadable = errorOf(await executor.run({ code: `return { fine: 1, bad: ${keysTrap} }` }))
    assert.deepEqual([unreadable.kind, unreadable.message], ['serialize', 'no keys for you'])

    const cycle = await executor.run({ code: 'const a: any = { name: "a" }; a.self = a; a.list = [a, 1]; return a' })
    assert.deepEqual(cycle, { ok: true, result: { name: 'a', self: null, list: [null, 1] } })

    const big = errorOf(await executor.run({ code: 'return Array.from({ length: 100000 }, (_, i) => "item " + i)' }))
    assert.equal(big.kind, 'serialize')
    assert.match(big.message, /its JSON is at least 10000\d\d bytes \(976\.\d KiB\), over the cap of 1000000 bytes \(976\.6 KiB\)/)
    const bigString = errorOf(await executor.run({ code: 'return "z".repeat(2_000_000)' }))
    assert.match(bigString.message, /its JSON is 2000002 bytes \(1\.9 MiB\), over the cap of 1000000 bytes/)
  })
})
