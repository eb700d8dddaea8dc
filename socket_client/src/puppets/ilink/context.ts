/**
 * Which `context_token` a send uses.
 *
 * iLink needs the token of a user message to answer that user. The official client answers a
 * message with that message's own token; field reports say each token carries its own budget.
 * So: inside `withMessage(id, fn)` (an AsyncLocalStorage scope) a send to that message's talker
 * uses THAT message's token; otherwise the latest token of the user. No token at all means the
 * window is closed: the send is refused, never sent blind.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { ILinkError } from './errors.js'
import { LruMap } from './lru.js'
import { MAX_CONTEXT_USERS, type ContextTokenEntry } from './store.js'

export interface ChosenToken {
  token: string
  /** `message`: the token of the message in scope; `latest`: the user's latest one. */
  source: 'message' | 'latest'
  /** The Wechaty message id the token came with. */
  messageId: string
}

/** Per-message tokens kept on disk, so a reply after a restart uses its message's token. */
export const PERSISTED_MESSAGE_TOKENS = 1_000

interface MessageToken {
  userId: string
  token: string
}

export class ContextTokens {
  /** Per user, the token of their newest message (insertion order = recency). */
  private latest = new LruMap<string, ContextTokenEntry>(MAX_CONTEXT_USERS)
  /** Per message id, the token it came with. */
  private readonly byMessage: LruMap<string, MessageToken>
  private readonly scope = new AsyncLocalStorage<{ messageId: string }>()

  constructor(maxMessages = 5_000) {
    this.byMessage = new LruMap(maxMessages)
  }

  /** Records the token of a user message; `messageIds` are the Wechaty ids of its parts. */
  remember(userId: string, token: string, messageIds: readonly string[], createTimeMs: number): void {
    for (const id of messageIds) this.byMessage.set(id, { userId, token })
    const current = this.latest.peek(userId)
    // A re-delivered older message must not replace the token of a newer one.
    if (current !== undefined && current.createTimeMs > createTimeMs) return
    this.latest.set(userId, { token, messageId: messageIds[0] ?? '', createTimeMs })
  }

  /** Runs `fn` with `messageId` as the message being answered. */
  withMessage<T>(messageId: string, fn: () => Promise<T>): Promise<T> {
    return this.scope.run({ messageId }, fn)
  }

  /** The message id in scope, if any. */
  currentMessageId(): string | null {
    return this.scope.getStore()?.messageId ?? null
  }

  /** The token for a send to `userId`, or null when there is none. */
  choose(userId: string): ChosenToken | null {
    const messageId = this.currentMessageId()
    if (messageId !== null) {
      const known = this.byMessage.get(messageId)
      if (known !== undefined) {
        if (known.userId !== userId) {
          throw new ILinkError(
            `the reply context is message ${messageId} from another user; a send to ${userId} cannot use its context token`,
            { code: 'context_mismatch', endpoint: 'sendmessage' },
          )
        }
        return { token: known.token, source: 'message', messageId }
      }
    }
    const latest = this.latest.get(userId)
    return latest === undefined ? null : { token: latest.token, source: 'latest', messageId: latest.messageId }
  }

  /** The token for a send to `userId`, or an ILinkError `no_context_token`. */
  require(userId: string): ChosenToken {
    const chosen = this.choose(userId)
    if (chosen === null) {
      throw new ILinkError(
        `no context_token for ${userId}: the send window is closed (the user has not written to the bot, or not since the last login); only a new message from the user opens it`,
        { code: 'no_context_token', endpoint: 'sendmessage' },
      )
    }
    return chosen
  }

  /** The newest per-message tokens, oldest first: what a restart needs to answer them. */
  messageSnapshot(limit = PERSISTED_MESSAGE_TOKENS): Array<[string, string, string]> {
    return [...this.byMessage.entries()].slice(-limit).map(([id, m]) => [id, m.userId, m.token])
  }

  loadMessages(entries: ReadonlyArray<readonly [string, string, string]>): void {
    for (const [id, userId, token] of entries) this.byMessage.set(id, { userId, token })
  }

  load(entries: Map<string, ContextTokenEntry>): void {
    this.latest = new LruMap(MAX_CONTEXT_USERS)
    for (const [userId, entry] of entries) this.latest.set(userId, entry)
  }

  snapshot(): Map<string, ContextTokenEntry> {
    return new Map(this.latest.entries())
  }

  clear(): void {
    this.latest.clear()
    this.byMessage.clear()
  }
}
