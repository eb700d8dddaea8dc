import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { decryptAesEcb, encryptAesEcb, mediaKeyToWire, paddedSize, parseMediaKey } from '../src/puppets/ilink/crypto.js'
import { ILinkError } from '../src/puppets/ilink/errors.js'

// FIPS-197 appendix C.1 (AES-128): key 000102…0f, plaintext 00112233…ff.
const KEY = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex')
const PLAIN = Buffer.from('00112233445566778899aabbccddeeff', 'hex')
const BLOCK = '69c4e0d86a7b0430d8cdb78070b4c55a'

describe('ilink crypto: AES-128-ECB with PKCS7', () => {
  it('matches the FIPS-197 vector; a full block of padding follows a whole block', () => {
    const cipher = encryptAesEcb(PLAIN, KEY)
    assert.equal(cipher.length, 32)
    assert.equal(cipher.subarray(0, 16).toString('hex'), BLOCK)
    // The second block is 16 bytes of 0x10 encrypted with the same key (ECB: block by block).
    const padBlock = encryptAesEcb(Buffer.alloc(16, 0x10), KEY).subarray(0, 16)
    assert.deepEqual(cipher.subarray(16), padBlock)
    assert.deepEqual(decryptAesEcb(cipher, KEY), PLAIN)
  })

  it('padded sizes: always 1..16 bytes more, a multiple of 16', () => {
    for (const n of [0, 1, 15, 16, 17, 31, 32, 5 * 1024 * 1024]) {
      const size = paddedSize(n)
      assert.equal(size % 16, 0)
      assert.ok(size > n && size <= n + 16, `${n} → ${size}`)
      assert.equal(encryptAesEcb(Buffer.alloc(n), KEY).length, size)
    }
  })

  it('round-trips binary data of any length', () => {
    const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 37) & 0xff))
    assert.deepEqual(decryptAesEcb(encryptAesEcb(data, KEY), KEY), data)
  })

  it('accepts the three key forms: 32 hex characters, base64 of 16 bytes, base64 of the hex text', () => {
    const hex = KEY.toString('hex')
    assert.deepEqual(parseMediaKey(hex), KEY)
    assert.deepEqual(parseMediaKey(hex.toUpperCase()), KEY)
    assert.deepEqual(parseMediaKey(KEY.toString('base64')), KEY)
    assert.deepEqual(parseMediaKey(Buffer.from(hex, 'ascii').toString('base64')), KEY)
    assert.deepEqual(parseMediaKey(` ${hex} `), KEY)
    // What the puppet sends is the third form, and it parses back.
    assert.deepEqual(parseMediaKey(mediaKeyToWire(KEY)), KEY)
    assert.equal(mediaKeyToWire(KEY), Buffer.from(hex).toString('base64'))
  })

  it('refuses keys of any other shape with a clear error that does not contain the key', () => {
    for (const bad of ['', 'abc', 'zz'.repeat(16), Buffer.alloc(20, 7).toString('base64'), Buffer.from('x'.repeat(32)).toString('base64'), '!!!!']) {
      assert.throws(
        () => parseMediaKey(bad),
        (e: unknown) => e instanceof ILinkError && e.code === 'media_key' && /media key is not usable/.test(e.message) && (bad.length < 8 || !e.message.includes(bad)),
        `key ${JSON.stringify(bad)}`,
      )
    }
  })

  it('a key that does not decrypt is an ILinkError media_decrypt, not garbage', () => {
    const cipher = encryptAesEcb(Buffer.from('hello, this is a file'), KEY)
    const wrong = Buffer.from('ffeeddccbbaa99887766554433221100', 'hex')
    assert.throws(() => decryptAesEcb(cipher, wrong, 'image of message 1'), (e: unknown) => {
      return e instanceof ILinkError && e.code === 'media_decrypt' && /image of message 1: wrong AES key or damaged data/.test(e.message)
    })
    assert.throws(() => decryptAesEcb(cipher.subarray(0, 20), KEY), (e: unknown) => e instanceof ILinkError && /not a whole number of AES blocks/.test(e.message))
    assert.throws(() => decryptAesEcb(Buffer.alloc(0), KEY), (e: unknown) => e instanceof ILinkError && e.code === 'media_decrypt')
  })
})
