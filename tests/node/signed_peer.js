'use strict'
// A Node trader on the exchange, with grenache-nodejs-http and Node's own crypto only:
// it signs an order, sends it, checks that the same signature on another orderId is
// refused, sends a batch of signed orders, then verifies the matcher's signed head
// (dex-head/2: it names the exchange instance, the sequencer's key) and the version's
// signed root (docs/protocol.md, "Signatures" and "Batches").
// Usage: node signed_peer.js --grape URL --clientId ID --orderId ID --matcherKey HEX
//        --instance HEX
// Prints {"ok": true, "submitted", "forged", "head", "root"} or {"ok": false, "error"}.
const crypto = require('crypto')
const { PeerRPCClient } = require('grenache-nodejs-http')
const Link = require('grenache-nodejs-link')
const args = require('./_args')(process.argv.slice(2))

const link = new Link({ grape: args.grape, requestTimeout: 5000 })
link.start()
const peer = new PeerRPCClient(link, {})
peer.init()

// The exchange's canonical JSON: keys sorted, no spaces (values here are ASCII).
function canonical (value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value)
  if (Array.isArray(value)) return '[' + value.map(canonical).join(',') + ']'
  const keys = Object.keys(value).sort()
  return '{' + keys.map(k => JSON.stringify(k) + ':' + canonical(value[k])).join(',') + '}'
}

// The signed bytes: "<domain>\n" + canonical JSON of the object without "sig".
function message (domain, obj) {
  const body = Object.assign({}, obj)
  delete body.sig
  return Buffer.from(domain + '\n' + canonical(body))
}

function publicKeyFromHex (hex) {
  const x = Buffer.from(hex, 'hex').toString('base64url')
  return crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' })
}

function verify (domain, obj, keyHex) {
  const sig = Buffer.from(obj.sig, 'hex')
  return crypto.verify(null, message(domain, obj), publicKeyFromHex(keyHex), sig)
}

const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519')
const pubKey = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url').toString('hex')

function signOrder (payload) {
  const body = Object.assign({}, payload, { pubKey })
  return Object.assign(body, { sig: crypto.sign(null, message('dex-order/1', body), privateKey).toString('hex') })
}

function request (name, payload, timeout) {
  return new Promise((resolve, reject) => {
    peer.request(name, payload, { timeout: timeout || 10000 }, (err, data) => err ? reject(err) : resolve(data))
  })
}

function get (key) {
  return new Promise((resolve, reject) => link.get(key, (err, data) => err ? reject(err) : resolve(data)))
}

async function main () {
  const order = signOrder({ clientId: args.clientId, orderId: args.orderId, side: 'buy', price: '1', amount: '0.5' })
  const submitted = await request('submit_order', order)
  let forged = null
  try {
    await request('submit_order', Object.assign({}, order, { orderId: args.orderId + 'x' }))
  } catch (err) {
    forged = err.message
  }
  // A modify names itself by a signed requestId: sent twice, it is applied once.
  const modify = signOrder({ op: 'modify', clientId: args.clientId, orderId: args.orderId, requestId: args.orderId + '-m1', price: '0.9' })
  const modified = await request('submit_order', modify)
  const modifiedAgain = await request('submit_order', modify)
  const refusal = async (payload) => {
    try {
      await request('submit_order', payload)
    } catch (err) {
      return err.message
    }
    return null
  }
  const renamedModify = await refusal(Object.assign({}, modify, { requestId: args.orderId + '-m2' }))
  const unnamedModify = await refusal(signOrder({ op: 'modify', clientId: args.clientId, orderId: args.orderId, price: '0.8' }))
  // A batch (docs/protocol.md "Batches"): an array of signed orders in one request,
  // answered per order in the same order; a tampered one refuses only itself.
  const good = signOrder({ clientId: args.clientId, orderId: args.orderId + '-b1', side: 'sell', price: '2', amount: '0.5' })
  const tampered = Object.assign(signOrder({ clientId: args.clientId, orderId: args.orderId + '-b2', side: 'sell', price: '2', amount: '0.5' }), { price: '3' })
  const batch = await request('submit_order', [good, tampered, good])
  let head = { seq: 0 }
  while (head.seq < Math.max(modified.seq, batch[0].seq || 0)) {
    head = await request('orderbook_head', { after: head.seq, waitMs: 5000 }, 10000)
  }
  if (head.key !== args.matcherKey) throw new Error('head: not the matcher key given')
  if (head.instance !== args.instance) throw new Error('head: not the exchange instance given')
  if (!verify('dex-head/2', head, head.key)) throw new Error('head: bad signature')
  // Another instance under the same signature does not verify: the instance is signed.
  if (verify('dex-head/2', Object.assign({}, head, { instance: 'ab'.repeat(32) }), head.key)) {
    throw new Error('a head with another instance verified')
  }
  const item = await get(head.root)
  const text = item.v
  const key = crypto.createHash('sha1').update(Buffer.byteLength(text) + ':' + text).digest('hex')
  if (key !== head.root) throw new Error('root: content does not match its key')
  const root = JSON.parse(text)
  if (root.key !== args.matcherKey) throw new Error('root: not the matcher key given')
  if (!verify('dex-root/1', root, root.key)) throw new Error('root: bad signature')
  // A forged root (one field changed) does not verify.
  if (verify('dex-root/1', Object.assign({}, root, { seq: root.seq + 1 }), root.key)) {
    throw new Error('a changed root verified')
  }
  return { submitted, forged, modified, modifiedAgain, renamedModify, unnamedModify, batch, head, root, pubKey }
}

main().then(
  (out) => finish(Object.assign({ ok: true }, out)),
  (err) => finish({ ok: false, error: err.message })
)

function finish (out) {
  process.stdout.write(JSON.stringify(out) + '\n')
  peer.stop()
  link.stop()
  process.exit(0)
}
