/**
 * Compiles and runs snippets sent by the server (`exec`).
 *
 * A snippet is the body of an async function that sees `bot, args, FileBox, log, mocker, mock,
 * metapuppet`. It is compiled once with esbuild (TypeScript accepted; syntax errors rejected
 * with a position inside the snippet) and cached by its text, so a repeated snippet costs one
 * Map lookup. Caller data travels in `args`, never formatted into `code`.
 *
 * `metapuppet` is per call: `{signal, fileFromUrl(url, {name})}`. `signal` is aborted when the
 * call ends (answered or timed out); `fileFromUrl` downloads under the download policy
 * (download.ts) and stops at that signal.
 *
 * Snippets start in a microtask of their own and are watched (watchdog.ts): one that never
 * yields is stopped at its timeout instead of stalling the bot. A result is capped in bytes of
 * its JSON by the server's frame limit (`maxResultBytes`): a larger one fails that call, not the
 * connection.
 */
import { transformSync, type Message as EsbuildMessage } from 'esbuild'
import { FileBox } from 'file-box'
import { inspect } from 'node:util'
import type { Wechaty } from 'wechaty'
import { rateLimitedLogger, type Logger } from './log.js'
import {
  DEFAULT_EXEC_TIMEOUT_MS,
  MAX_EXEC_TIMEOUT_MS,
  type ErrorKind,
  type ExecResponse,
  type WireError,
} from './protocol.js'
import { DEFAULT_MAX_JSON_BYTES, toWire } from './serialize.js'
import { fileBoxFromUrl, type DownloadPolicy, type ResolvedAddress } from './download.js'
import type { SnippetWatchdog } from './watchdog.js'

/** What every snippet gets as `metapuppet`, one per call. */
export interface SnippetHelpers {
  /** Aborted when the call ends (answered or timed out). */
  signal: AbortSignal
  /** Downloads a URL under the download policy into a FileBox; stops when the call ends. */
  fileFromUrl(url: string, options?: { name?: string | null }): Promise<FileBox>
}

export type SnippetFunction = (
  bot: Wechaty | null,
  args: unknown,
  fileBox: typeof FileBox,
  log: Logger,
  mocker: unknown,
  mock: unknown,
  metapuppet: SnippetHelpers,
) => Promise<unknown>

export interface ExecutorOptions {
  bot: Wechaty | null
  log: Logger
  /** The wechaty-puppet-mock Mocker, null outside mock mode. */
  mocker?: unknown
  /** The MockKit, null outside mock mode. */
  mock?: unknown
  /** How many compiled snippets to keep (least recently used are dropped first). */
  cacheSize?: number
  /** Cap on the bytes of JSON of one result; a function is asked at every call (the server's limit). */
  maxResultBytes?: number | (() => number)
  /** Stops snippets that never yield; without one such a snippet blocks the client. */
  watchdog?: SnippetWatchdog
  /** The policy of `metapuppet.fileFromUrl` (download.ts). */
  download?: Partial<DownloadPolicy>
  /** Name resolution for downloads (tests). */
  resolve?: (host: string) => Promise<ResolvedAddress[]>
  /** The `log` snippets see; default: `log` limited to 100 lines per second (see rateLimitedLogger). */
  snippetLog?: Logger
}

const PARAMS = 'bot, args, FileBox, log, mocker, mock, metapuppet'
const WRAPPER_HEAD = `async function __snippet(${PARAMS}) {\n`
const WRAPPER_TAIL = '\n}\n'
/** Lines the wrapper adds before the snippet's first line. */
const HEAD_LINES = 1

export class Executor {
  /** Counters, for tests and diagnostics. */
  readonly stats = { compiles: 0, hits: 0 }

  private readonly cache = new Map<string, SnippetFunction | WireError>()
  private lastCode: string | undefined
  private readonly bot: Wechaty | null
  private readonly log: Logger
  private readonly snippetLog: Logger
  private readonly mocker: unknown
  private readonly mock: unknown
  private readonly cacheSize: number
  private readonly maxResultBytes: () => number
  private readonly watchdog: SnippetWatchdog | undefined
  private readonly download: Partial<DownloadPolicy>
  private readonly resolve: ((host: string) => Promise<ResolvedAddress[]>) | undefined
  private calls = 0

  constructor(options: ExecutorOptions) {
    this.bot = options.bot
    this.log = options.log
    this.snippetLog = options.snippetLog ?? rateLimitedLogger(options.log)
    this.mocker = options.mocker ?? null
    this.mock = options.mock ?? null
    this.cacheSize = Math.max(1, options.cacheSize ?? 1000)
    const cap = options.maxResultBytes ?? DEFAULT_MAX_JSON_BYTES
    this.maxResultBytes = typeof cap === 'function' ? cap : () => cap
    this.watchdog = options.watchdog
    this.download = options.download ?? {}
    this.resolve = options.resolve
  }

  /** Runs one exec request. Never rejects: every failure is an `{ok: false, error}` response. */
  run(req: unknown): Promise<ExecResponse> {
    if (typeof req !== 'object' || req === null || Array.isArray(req)) {
      return Promise.resolve(badRequest(`exec request must be an object {code, args, timeout_ms}, got ${describe(req)}`))
    }
    const { code, args, timeout_ms: timeoutMs } = req as Record<string, unknown>
    if (typeof code !== 'string' || code.trim() === '') {
      return Promise.resolve(badRequest(`code must be a non-empty string, got ${describe(code)}`))
    }
    let timeout = DEFAULT_EXEC_TIMEOUT_MS
    if (timeoutMs !== undefined && timeoutMs !== null) {
      if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_EXEC_TIMEOUT_MS) {
        return Promise.resolve(
          badRequest(`timeout_ms must be a positive number of milliseconds up to ${MAX_EXEC_TIMEOUT_MS}, got ${describe(timeoutMs)}`),
        )
      }
      timeout = timeoutMs
    }
    const compiled = this.compile(code)
    if (typeof compiled !== 'function') return Promise.resolve({ ok: false, error: compiled })
    return this.invoke(compiled, args === undefined ? {} : args, timeout)
  }

  /**
   * The compiled function for `code`, or the compile error. Cached by the snippet text:
   * a repeated snippet returns the same function object.
   */
  compile(code: string): SnippetFunction | WireError {
    const hit = this.cache.get(code)
    if (hit !== undefined) {
      this.stats.hits++
      if (code !== this.lastCode) {
        // Refresh the LRU position; skipped when the same snippet repeats back to back.
        this.cache.delete(code)
        this.cache.set(code, hit)
        this.lastCode = code
      }
      return hit
    }
    this.stats.compiles++
    const compiled = compileSnippet(code)
    if (this.cache.size >= this.cacheSize) {
      const oldest = this.cache.keys().next()
      if (oldest.done !== true) this.cache.delete(oldest.value)
    }
    this.cache.set(code, compiled)
    this.lastCode = code
    return compiled
  }

  private invoke(fn: SnippetFunction, args: unknown, timeoutMs: number): Promise<ExecResponse> {
    return new Promise<ExecResponse>((resolve) => {
      const call = ++this.calls
      const deadline = Date.now() + timeoutMs
      const watchdog = this.watchdog
      const controller = new AbortController()
      const helpers: SnippetHelpers = {
        signal: controller.signal,
        fileFromUrl: (url, options) =>
          fileBoxFromUrl(String(url), options?.name ?? null, { policy: this.download, signal: controller.signal, resolve: this.resolve }),
      }
      let settled = false
      const finish = (response: ExecResponse): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        watchdog?.untrack(call)
        controller.abort()
        resolve(response)
      }
      const timer = setTimeout(() => {
        const blocked = watchdog?.stoppedAfter(call) ?? null
        if (blocked !== null) {
          this.log.error('snippet call #%d kept the client busy for %d ms without yielding, past its timeout of %d ms: it was stopped', call, blocked, timeoutMs)
        }
        const message =
          blocked === null
            ? `snippet did not finish within ${timeoutMs} ms`
            : `snippet did not finish within ${timeoutMs} ms: it kept the client busy for ${blocked} ms without yielding (a loop that never awaits?) and was stopped; the bot goes on`
        finish(errorResponse('timeout', 'SnippetTimeout', message))
      }, timeoutMs)
      watchdog?.track(call, deadline)
      // A microtask of its own: if the watchdog has to stop the snippet, only this microtask
      // is cut short (Node survives that; a stop inside a timer or I/O callback aborts it).
      queueMicrotask(() => {
        if (settled) return
        let running: Promise<unknown>
        watchdog?.enterSync(call, deadline)
        try {
          running = fn(this.bot, args, FileBox, this.snippetLog, this.mocker, this.mock, helpers)
        } catch (e) {
          watchdog?.leaveSync(call)
          finish({ ok: false, error: fromThrown('runtime', e) })
          return
        }
        watchdog?.leaveSync(call)
        running.then(
          (value) => {
            if (settled) return
            toWire(value, this.maxResultBytes()).then(
              (result) => finish({ ok: true, result }),
              (e: unknown) => finish({ ok: false, error: fromThrown('serialize', e) }),
            )
          },
          (e: unknown) => {
            if (settled) this.log.debug('snippet failed after its timeout: %s', describeThrown(e))
            finish({ ok: false, error: fromThrown('runtime', e) })
          },
        )
      })
    })
  }
}

/** Compiles a snippet body; returns the function or a `compile` error. Exported for tests. */
export function compileSnippet(code: string): SnippetFunction | WireError {
  let js: string
  try {
    js = transformSync(WRAPPER_HEAD + code + WRAPPER_TAIL, {
      loader: 'ts',
      target: 'esnext',
      sourcefile: 'snippet.ts',
      logLevel: 'silent',
      tsconfigRaw: {},
    }).code
  } catch (e) {
    const errors = (e as { errors?: EsbuildMessage[] }).errors
    const message = Array.isArray(errors) && errors.length > 0
      ? errors.map((error) => formatEsbuildError(error, code)).join('\n')
      : e instanceof Error ? e.message : String(e)
    return { kind: 'compile', name: 'SyntaxError', message, stack: null }
  }
  let fn: SnippetFunction
  try {
    // Function declarations are hoisted: returning first gets the function without running
    // any other top-level statement the output might hold.
    fn = new Function(`'use strict';\nreturn __snippet;\n${js}`)() as SnippetFunction
  } catch (e) {
    // Early errors esbuild lets through (rare); still a compile error.
    return { kind: 'compile', name: e instanceof Error ? e.name : 'SyntaxError', message: describeThrown(e), stack: null }
  }
  if (fn.toString() !== js.trimEnd()) {
    // Something outside the function: the snippet closed the wrapper with an unbalanced '}'.
    return {
      kind: 'compile',
      name: 'SyntaxError',
      message: "snippet: unbalanced '}': the code closes its function body early (a snippet is the body of one async function)",
      stack: null,
    }
  }
  return fn
}

/** `snippet:LINE:COLUMN: text`, both 1-based and relative to the snippet, not the wrapper. */
function formatEsbuildError(error: EsbuildMessage, code: string): string {
  const loc = error.location
  if (loc === null) return error.text
  const lines = code.split('\n')
  const line = loc.line - HEAD_LINES
  if (line > lines.length) {
    // Reported on the wrapper's closing brace: the snippet ended too early.
    const last = lines.length
    return `snippet:${last}:${(lines[last - 1] ?? '').length + 1}: unexpected end of snippet (${error.text})`
  }
  return `snippet:${Math.max(1, line)}:${loc.column + 1}: ${error.text}`
}

function errorResponse(kind: ErrorKind, name: string, message: string, stack: string | null = null): ExecResponse {
  return { ok: false, error: { kind, name, message, stack } }
}

function badRequest(message: string): ExecResponse {
  return errorResponse('bad_request', 'BadRequest', message)
}

/**
 * Turns anything thrown into a wire error; non-Error values get the name "NonError". Never
 * throws, even for hostile values (a Proxy whose traps throw, a getter that throws, ...).
 */
export function fromThrown(kind: ErrorKind, e: unknown): WireError {
  try {
    const error = wireErrorOf(kind, e)
    error.message = cut(error.message, MAX_ERROR_TEXT)
    if (error.stack !== null) error.stack = cut(error.stack, MAX_ERROR_TEXT)
    return error
  } catch (inner) {
    let why = 'unknown'
    try {
      why = inner instanceof Error ? inner.message : typeof inner
    } catch {
      // keep 'unknown'
    }
    return { kind, name: 'NonError', message: `<a thrown value that cannot be inspected: ${why}>`, stack: null }
  }
}

/** Error messages and stacks longer than this many characters are cut (a snippet may throw a huge string). */
export const MAX_ERROR_TEXT = 64 * 1024

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`
}

function wireErrorOf(kind: ErrorKind, e: unknown): WireError {
  let error: WireError | null = null
  if (e instanceof Error) {
    error = { kind, name: String(e.name), message: String(e.message), stack: typeof e.stack === 'string' ? e.stack : null }
  } else if (typeof e === 'object' && e !== null) {
    const { name, message, stack } = e as Record<string, unknown>
    if (typeof name === 'string' && typeof message === 'string') {
      error = { kind, name, message, stack: typeof stack === 'string' ? stack : null }
    }
  }
  if (error === null) return { kind, name: 'NonError', message: describeThrown(e), stack: null }
  const code = (e as { code?: unknown }).code
  if ((typeof code === 'number' && Number.isFinite(code)) || (typeof code === 'string' && code !== '')) {
    // The thrown error's own code (e.g. ilink's -2 / -14), so Python need not parse the text.
    error.code = typeof code === 'string' ? cut(code, 256) : code
  }
  return error
}

function describeThrown(e: unknown): string {
  try {
    if (typeof e === 'string') return e
    if (e instanceof Error) return `${e.name}: ${e.message}`
    return inspect(e, { depth: 4, breakLength: Infinity })
  } catch {
    return '<a thrown value that cannot be inspected>'
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string') {
    if (value === '') return 'an empty string'
    return value.trim() === '' ? 'a blank string' : `the string ${JSON.stringify(value.slice(0, 40))}`
  }
  if (typeof value === 'number') return String(value)
  return typeof value
}
