/**
 * AES-128-ECB with PKCS7 padding (the iLink CDN's media encryption) and the media key forms.
 *
 * ECB is what the protocol mandates (`encrypt_type: 1`); it does not hide repeated blocks.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { ILinkError } from './errors.js'

export const KEY_BYTES = 16

export function encryptAesEcb(plain: Buffer, key: Buffer): Buffer {
  const cipher = createCipheriv('aes-128-ecb', key, null)
  return Buffer.concat([cipher.update(plain), cipher.final()])
}

/** Decrypts; a wrong key or damaged data is an ILinkError `media_decrypt` (never garbage silently, unless the padding happens to check out). */
export function decryptAesEcb(cipherText: Buffer, key: Buffer, what = 'media'): Buffer {
  if (cipherText.length === 0 || cipherText.length % 16 !== 0) {
    throw new ILinkError(
      `cannot decrypt the ${what}: ${cipherText.length} bytes is not a whole number of AES blocks (16 bytes each)`,
      { code: 'media_decrypt', endpoint: 'cdn download' },
    )
  }
  try {
    const decipher = createDecipheriv('aes-128-ecb', key, null)
    return Buffer.concat([decipher.update(cipherText), decipher.final()])
  } catch (e) {
    throw new ILinkError(`cannot decrypt the ${what}: wrong AES key or damaged data`, {
      code: 'media_decrypt',
      endpoint: 'cdn download',
      cause: e,
    })
  }
}

/** Cipher size of `plainSize` bytes: PKCS7 always adds 1 to 16 bytes. */
export function paddedSize(plainSize: number): number {
  return (Math.floor(plainSize / 16) + 1) * 16
}

export function newMediaKey(): Buffer {
  return randomBytes(KEY_BYTES)
}

/** The `aes_key` of an outgoing media item: base64 of the key's hex text (what the official client sends). */
export function mediaKeyToWire(key: Buffer): string {
  return Buffer.from(key.toString('hex'), 'ascii').toString('base64')
}

const HEX_KEY = /^[0-9a-fA-F]{32}$/
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2,3})?$/
const BASE64URL = /^[A-Za-z0-9_-]+={0,2}$/

/**
 * A media key as the server sends it: 32 hex characters, base64 of the 16 raw bytes, or base64
 * of the 32-character hex text. Anything else is an ILinkError `media_key` (the key is not in it).
 */
export function parseMediaKey(text: string): Buffer {
  const value = text.trim()
  if (HEX_KEY.test(value)) return Buffer.from(value, 'hex')
  if (value !== '' && (BASE64.test(value) || BASE64URL.test(value))) {
    const decoded = Buffer.from(value, BASE64.test(value) ? 'base64' : 'base64url')
    if (decoded.length === KEY_BYTES) return decoded
    const ascii = decoded.toString('latin1')
    if (decoded.length === 32 && HEX_KEY.test(ascii)) return Buffer.from(ascii, 'hex')
    throw new ILinkError(
      `media key is not usable: base64 decodes to ${decoded.length} bytes (expected 16 raw bytes or 32 hex characters)`,
      { code: 'media_key', endpoint: 'media key' },
    )
  }
  throw new ILinkError(
    `media key is not usable: ${value.length} characters that are neither 32 hex characters nor base64`,
    { code: 'media_key', endpoint: 'media key' },
  )
}

export function md5Hex(data: Buffer): string {
  return createHash('md5').update(data).digest('hex')
}
