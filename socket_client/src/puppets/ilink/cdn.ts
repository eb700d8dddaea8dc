/**
 * Media through the iLink CDN, encrypted with AES-128-ECB.
 *
 * Upload: a fresh 16-byte key; `getuploadurl` (sizes, md5, hex key) answers `upload_full_url` or
 * `upload_param`; the ciphertext is POSTed there (the official client and CowAgent POST; the
 * README says PUT); the CDN answers the download reference in the `x-encrypted-param` header.
 * Download: GET `full_url`, else `<cdn>/download?encrypted_query_param=…`, then decrypt.
 */
import { randomBytes } from 'node:crypto'
import type { ILinkApi } from './api.js'
import { decryptAesEcb, encryptAesEcb, md5Hex, newMediaKey, paddedSize, parseMediaKey } from './crypto.js'
import { ILinkError, isAbort } from './errors.js'
import type { MediaRef } from './messages.js'
import { sleep } from './timing.js'

export const UPLOAD_MEDIA_TYPE = { image: 1, video: 2, file: 3, voice: 4 } as const
export type UploadMediaType = (typeof UPLOAD_MEDIA_TYPE)[keyof typeof UPLOAD_MEDIA_TYPE]

export interface Uploaded {
  /** Goes into the item's `media.encrypt_query_param`. */
  encryptQueryParam: string
  key: Buffer
  rawSize: number
  cipherSize: number
}

export interface UploadRequest {
  data: Buffer
  mediaType: UploadMediaType
  toUserId: string
}

export interface CdnOptions {
  cdnBaseUrl: string
  /** Per request. */
  timeoutMs?: number
  /** Attempts of the CDN POST on a 5xx or network failure (4xx fails at once). */
  attempts?: number
  signal?: AbortSignal
}

export async function uploadMedia(api: ILinkApi, request: UploadRequest, options: CdnOptions): Promise<Uploaded> {
  const { data, mediaType, toUserId } = request
  const key = newMediaKey()
  const filekey = randomBytes(16).toString('hex')
  const cipherSize = paddedSize(data.length)
  const answer = await api.getUploadUrl(
    {
      filekey,
      media_type: mediaType,
      to_user_id: toUserId,
      rawsize: data.length,
      rawfilemd5: md5Hex(data),
      filesize: cipherSize,
      no_need_thumb: true,
      aeskey: key.toString('hex'),
    },
    { signal: options.signal },
  )
  const full = typeof answer.upload_full_url === 'string' ? answer.upload_full_url.trim() : ''
  const param = typeof answer.upload_param === 'string' ? answer.upload_param : ''
  if (full === '' && param === '') {
    throw new ILinkError('getuploadurl answered neither upload_full_url nor upload_param', { code: 'bad_response', endpoint: 'getuploadurl' })
  }
  const url = full !== ''
    ? full
    : `${options.cdnBaseUrl}/upload?encrypted_query_param=${encodeURIComponent(param)}&filekey=${encodeURIComponent(filekey)}`
  const cipherText = encryptAesEcb(data, key)
  const attempts = Math.max(1, options.attempts ?? 3)
  let last: unknown
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const { headers } = await api.fetchCapped(
        'cdn upload',
        url,
        { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: cipherText },
        { timeoutMs: options.timeoutMs ?? 120_000, signal: options.signal },
        1024 * 1024,
      )
      const reference = headers.get('x-encrypted-param')
      if (reference === null || reference === '') {
        throw new ILinkError('cdn upload: the CDN answered without an x-encrypted-param header', { code: 'bad_response', endpoint: 'cdn upload' })
      }
      return { encryptQueryParam: reference, key, rawSize: data.length, cipherSize }
    } catch (e) {
      last = e
      const status = e instanceof ILinkError ? e.httpStatus : null
      if (isAbort(e) || (status !== null && status >= 400 && status < 500)) throw e
      if (attempt < attempts) await sleep(500 * attempt, options.signal)
    }
  }
  throw last
}

/** Downloads and decrypts one inbound media item; `what` names it in errors (e.g. "image of message 123"). */
export async function downloadMedia(api: ILinkApi, media: MediaRef, options: CdnOptions & { maxBytes: number; what: string }): Promise<Buffer> {
  const key = media.aesKey === null ? null : parseMediaKey(media.aesKey)
  let url: string
  if (media.fullUrl !== null) url = media.fullUrl
  else if (media.encryptQueryParam !== null) {
    url = `${options.cdnBaseUrl}/download?encrypted_query_param=${encodeURIComponent(media.encryptQueryParam)}`
  } else {
    throw new ILinkError(`the ${options.what} has no CDN reference; it cannot be downloaded`, { code: 'bad_response', endpoint: 'cdn download' })
  }
  const { text: body } = await api.fetchCapped(
    'cdn download',
    url,
    { method: 'GET' },
    { timeoutMs: options.timeoutMs ?? 120_000, signal: options.signal },
    options.maxBytes + 16,
  )
  return key === null ? body : decryptAesEcb(body, key, options.what)
}
