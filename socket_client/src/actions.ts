/**
 * Typed actions: `say` and `typing` without a snippet to compile (protocol 3).
 *
 * They come two ways:
 * - `act` requests (`act(req)`): one action with `timeout_ms`, answered like an exec.
 * - the actions of an event's acknowledgement (`runAcked(actions)`): the reply a robot hook
 *   returned. The outbox has recorded them as pending before they run; each chat's actions run
 *   one after the other, in the order they came; a failure is reported to the server as an
 *   `error` event (`ActionFailed`), since nobody waits for an answer.
 *
 * Every `say` has a send id. It is recorded in the outbox as begun before the puppet is asked
 * (on disk first) and as completed before it is answered (sendrecords.ts); a repeated id is
 * answered from the record without sending again, and one that is still running is joined. A
 * send a crash cut short between the two records is in doubt: never sent again, reported once
 * after the next start (`SendInterrupted`). So a handler the server runs again after a crash, or actions
 * replayed from the file after a crash of this client, duplicate nothing. Failed `act` sends are
 * not recorded (a handler run again may try again); a failed action of an acknowledgement is
 * recorded as failed, so it is reported once, not tried at every start.
 *
 * `say` does what the Python side's `SAY` snippet did: load and ready the conversation, build
 * the sayable (`file_url` downloads under the download policy), mention contacts in a room
 * text, and on a channel with send windows answer inside the replied-to message's context
 * (`bot.puppet.metapuppetWithContext`).
 */
import { FileBox } from 'file-box'
import type { Wechaty } from 'wechaty'
import { fromThrown } from './executor.js'
import { fileBoxFromUrl, type DownloadPolicy, type ResolvedAddress } from './download.js'
import type { Logger } from './log.js'
import type { Outbox } from './outbox.js'
import {
  DEFAULT_EXEC_TIMEOUT_MS,
  MAX_EXEC_TIMEOUT_MS,
  parseAction,
  type ErrorEventPayload,
  type ExecResponse,
  type Json,
  type SayAction,
  type TypedAction,
  type TypingAction,
} from './protocol.js'
import type { SendOutcome } from './sendrecords.js'

export interface ActionRunnerOptions {
  bot: Wechaty
  log: Logger
  /** Where sends are recorded (and the actions of acknowledgements kept until done). */
  outbox: Outbox
  /** Reports an action of an acknowledgement that failed (main.ts: an `error` event). */
  onFailed?: (payload: ErrorEventPayload) => void
  /** The policy of `file_url` sayables (download.ts). */
  download?: Partial<DownloadPolicy>
  resolve?: (host: string) => Promise<ResolvedAddress[]>
}

/** How long an action of an acknowledgement may take (a say's own timeout on the Python side). */
const ACKED_TIMEOUT_MS = 120_000

interface Loose {
  ready(): Promise<void>
  say(...args: unknown[]): Promise<{ id: string } | void | undefined>
}

interface ContextPuppet {
  metapuppetWithContext?: (messageId: string, send: () => Promise<unknown>) => Promise<unknown>
  metapuppetTyping?: (conversationId: string, on: boolean) => Promise<boolean>
}

export class ActionRunner {
  /** Counters for tests and diagnostics. */
  readonly stats = { sent: 0, repeated: 0, joined: 0, failed: 0, resumed: 0 }

  private readonly running = new Map<string, Promise<SendOutcome>>()
  /** The tail of each chat's acknowledged actions. */
  private readonly chats = new Map<string, Promise<void>>()

  constructor(private readonly options: ActionRunnerOptions) {}

  /** Runs one `act` request. Never rejects: every failure is an `{ok: false, error}` answer. */
  async act(req: unknown): Promise<ExecResponse> {
    const parsed = parseAction(req)
    if (typeof parsed === 'string') return badRequest(parsed)
    const timeoutMs = (req as { timeout_ms?: unknown }).timeout_ms ?? DEFAULT_EXEC_TIMEOUT_MS
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_EXEC_TIMEOUT_MS) {
      return badRequest(`timeout_ms must be a positive number of milliseconds up to ${MAX_EXEC_TIMEOUT_MS}`)
    }
    if (parsed.action === 'typing') return within(this.typing(parsed), timeoutMs)
    return within(this.send(parsed, false), timeoutMs)
  }

  /** Runs the actions of an acknowledgement (recorded as pending already), each chat in order. */
  runAcked(actions: readonly TypedAction[]): void {
    for (const action of actions) {
      const tail = this.chats.get(action.to) ?? Promise.resolve()
      const next = tail.then(() => this.runOne(action))
      this.chats.set(action.to, next)
      void next.finally(() => {
        if (this.chats.get(action.to) === next) this.chats.delete(action.to)
      })
    }
  }

  /** Runs the actions of acknowledgements a previous process left undone (after the login). */
  resume(): void {
    for (const id of this.options.outbox.takeInterrupted()) {
      const message = `the send ${id} was cut short by a crash of the Node client; it is not sent again (it may or may not have reached the chat)`
      this.options.log.warn('%s', message)
      this.options.onFailed?.({ name: 'SendInterrupted', message, stack: null, send_id: id })
    }
    const pending = this.options.outbox.pendingActions().filter((a) => a.action !== 'say' || !this.running.has(a.send_id))
    if (pending.length === 0) return
    this.stats.resumed += pending.length
    this.options.log.info('running %d sends of acknowledged events a previous run left undone', pending.length)
    this.runAcked(pending)
  }

  private async runOne(action: TypedAction): Promise<void> {
    if (action.action === 'typing') {
      await within(this.typing(action), ACKED_TIMEOUT_MS)
      return
    }
    if (!this.running.has(action.send_id) && this.options.outbox.sends.get(action.send_id) !== undefined) {
      this.stats.repeated++ // done (or in doubt, reported) before: nothing to run or report
      return
    }
    const outcome = await within(this.send(action, true), ACKED_TIMEOUT_MS)
    if (outcome.ok) return
    this.stats.failed++
    const message = `the reply ${action.send_id} to ${action.to} could not be sent: ${outcome.error.name}: ${outcome.error.message}`
    this.options.log.warn('%s', message)
    this.options.onFailed?.({ name: 'ActionFailed', message, stack: outcome.error.stack, send_id: action.send_id, to: action.to })
  }

  /**
   * Sends once per send id: joins a run in progress, answers a recorded one from its record, and
   * records a new one as begun (on disk before it runs) and then its outcome (before answering).
   */
  private send(action: SayAction, recordFailure: boolean): Promise<SendOutcome> {
    const id = action.send_id
    const running = this.running.get(id)
    if (running !== undefined) {
      this.stats.joined++
      return running
    }
    const { outbox, log } = this.options
    const recorded = outbox.sends.get(id)
    if (recorded !== undefined) {
      this.stats.repeated++
      log.debug('send %s was made before: answered from its record, not sent again', id)
      return Promise.resolve(recorded)
    }
    let begun = false
    const run = this.say(action, () => {
      // As late as possible, once everything is loaded, and written at once (not group-committed):
      // what a crash leaves in doubt is only the puppet's call itself.
      outbox.beginSend(id)
      outbox.flush()
      begun = true
    })
      .then(
        (result): SendOutcome => ({ ok: true, result }),
        (e: unknown): SendOutcome => ({ ok: false, error: fromThrown('runtime', e) }),
      )
      .then(
        (outcome) =>
          new Promise<SendOutcome>((resolve) => {
            if (outcome.ok) this.stats.sent++
            if (outcome.ok || recordFailure) outbox.recordSend(id, outcome)
            else if (begun) outbox.forgetSend(id)
            // answered once the record is written: a crash after the answer never repeats it
            outbox.whenWritten(() => resolve(outcome))
          }),
      )
      .finally(() => this.running.delete(id))
    this.running.set(id, run)
    return run
  }

  /** Makes the send; `begin` is awaited right before the puppet is asked (see `send`). */
  private async say(action: SayAction, begin: () => void): Promise<Json> {
    const { bot } = this.options
    const s = action.sayable
    const conversation = load(action.kind === 'room' ? bot.Room : bot.Contact, action.to)
    await conversation.ready()
    let thing: unknown
    switch (s.type) {
      case 'text':
        thing = s.text
        break
      case 'file':
        thing = FileBox.fromBase64(s.base64, s.name)
        break
      case 'file_url':
        thing = await fileBoxFromUrl(String(s.url), s.name ?? null, { policy: this.options.download, resolve: this.options.resolve })
        break
      case 'url':
        thing = new bot.UrlLink(s.payload as never)
        break
      case 'mini_program':
        thing = new bot.MiniProgram(s.payload as never)
        break
      case 'contact': {
        const contact = load(bot.Contact, s.id)
        await contact.ready()
        thing = contact
        break
      }
    }
    const mentions: unknown[] = []
    if (action.kind === 'room' && s.type === 'text') {
      for (const id of action.mentions) {
        const contact = load(bot.Contact, id)
        await contact.ready()
        mentions.push(contact)
      }
    }
    begin()
    const send = (): Promise<unknown> => conversation.say(thing, ...mentions)
    const puppet = bot.puppet as unknown as ContextPuppet
    const inContext = puppet.metapuppetWithContext
    const sent = (
      action.replyTo && typeof inContext === 'function' ? await inContext.call(puppet, action.replyTo, send) : await send()
    ) as { id?: unknown } | undefined | void
    return sent && typeof sent.id === 'string' ? sent.id : null
  }

  private async typing(action: TypingAction): Promise<ExecResponse> {
    try {
      const puppet = this.options.bot.puppet as unknown as ContextPuppet
      const typing = puppet.metapuppetTyping
      if (typeof typing !== 'function') return { ok: true, result: false }
      return { ok: true, result: Boolean(await typing.call(puppet, action.to, action.on)) }
    } catch (e) {
      return { ok: false, error: fromThrown('runtime', e) }
    }
  }
}

/** `Class.load(id)`: Wechaty 1.x has it on every user class, its typings leave it out. */
function load(kind: unknown, id: string): Loose {
  return (kind as { load(id: string): Loose }).load(id)
}

/** `work`'s answer, or a `timeout` error after `ms` (the work itself goes on). */
function within<T extends ExecResponse>(work: Promise<T>, ms: number): Promise<T | ExecResponse> {
  return new Promise((resolve) => {
    const timer = setTimeout(
      () => resolve({ ok: false, error: { kind: 'timeout', name: 'ActionTimeout', message: `the action did not finish within ${ms} ms`, stack: null } }),
      ms,
    )
    void work.then((answer) => {
      clearTimeout(timer)
      resolve(answer)
    })
  })
}

function badRequest(message: string): ExecResponse {
  return { ok: false, error: { kind: 'bad_request', name: 'BadRequest', message, stack: null } }
}
