/**
 * Errors of the ilink puppet.
 *
 * Every failure of a call to the iLink service is an `ILinkError` with a `code` the Python side
 * can read without parsing text: the server's numeric `errcode`/`ret` (e.g. -14 session expired,
 * -2 send refused), or a string for failures that never got such an answer (`http_500`,
 * `timeout`, `network`, `bad_response`, `no_context_token`, ...). Messages never hold a token.
 */

/** `errcode` / `ret` of an expired session: stop calling, a new QR login is needed. */
export const SESSION_EXPIRED = -14
/** `ret` of a refused send: the user's send window is closed until they write again. */
export const SEND_REFUSED = -2

export type ILinkErrorCode = number | string

export interface ILinkErrorOptions {
  code: ILinkErrorCode
  /** The endpoint (e.g. `sendmessage`) or local step (e.g. `cdn upload`) that failed. */
  endpoint: string
  httpStatus?: number | null
  cause?: unknown
}

export class ILinkError extends Error {
  override readonly name = 'ILinkError'
  readonly code: ILinkErrorCode
  readonly endpoint: string
  readonly httpStatus: number | null

  constructor(message: string, options: ILinkErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = options.code
    this.endpoint = options.endpoint
    this.httpStatus = options.httpStatus ?? null
  }
}

/** A Wechaty API the iLink channel cannot do (rooms, friendships, contact list, recall, ...). */
export class NotSupportedError extends Error {
  override readonly name = 'NotSupported'
  readonly code = 'not_supported'

  constructor(readonly capability: string) {
    super(`${capability} is not supported by the ilink channel (iLink bots get direct messages only: no rooms, friendships, contact list or recall)`)
  }
}

export function isSessionExpired(error: unknown): boolean {
  return error instanceof ILinkError && error.code === SESSION_EXPIRED
}

export function isAbort(error: unknown): boolean {
  return error instanceof ILinkError && error.code === 'aborted'
}

/** Text of anything thrown, for logs. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message
  return String(error)
}
