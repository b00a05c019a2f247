'use strict'
// Counts what a grape serves, for bench/e2e_bench.py --count-grape-calls. Loaded into an
// unmodified grape with `node --require` (grape itself is not changed): it wraps the
// body reader of the grape's HTTP API and the send of its DHT (k-rpc-socket), and writes
// its counters as JSON to $GRAPE_COUNTER_DIR/<pid>.json every 200 ms and on exit.
//   http: { "<path> <name>": n }   per API call, the name looked up / announced; and
//         "/get (first time)", "/put (first time)": gets of a key, puts of a value, not
//         asked of this grape before
//   peers: { "<remote port>": { "<path> <name>": n } }   who asked (the harness maps
//          each client port to a process with `ss`)
//   dht: { "q:<query>": n, "r": n, "e": n }   DHT messages this grape sent
const fs = require('fs')
const path = require('path')

const dir = process.env.GRAPE_COUNTER_DIR
const counts = { http: {}, peers: {}, dht: {} }
const seen = { '/get': new Set(), '/put': new Set() } // keys got, values put, ever

function bump (table, key) { table[key] = (table[key] || 0) + 1 }

function label (url, body) {
  let name = ''
  try {
    const data = JSON.parse(body).data
    if (url === '/lookup') name = String(data)
    else if (url === '/announce') name = String(data[0])
    else if (url in seen) {
      const item = url === '/get' ? JSON.stringify(data) : String(data.v)
      if (!seen[url].has(item)) {
        seen[url].add(item)
        bump(counts.http, `${url} (first time)`)
      }
    }
  } catch (e) {}
  return name ? `${url} ${name}` : url
}

const rawBodyPath = require.resolve('raw-body', { paths: [path.join(__dirname, '..', '..', 'node_modules', 'grenache-grape')] })
const getRawBody = require(rawBodyPath)
function countingRawBody (req, opts, cb) {
  const port = String(req.socket.remotePort)
  return getRawBody(req, opts, cb).then((buf) => {
    const key = label(req.url, buf.toString())
    bump(counts.http, key)
    bump(counts.peers[port] || (counts.peers[port] = {}), key)
    return buf
  })
}
require.cache[rawBodyPath].exports = countingRawBody

const rpcPath = require.resolve('k-rpc-socket', { paths: [path.join(__dirname, '..', '..', 'node_modules', 'k-rpc')] })
const RPC = require(rpcPath)
const send = RPC.prototype.send
RPC.prototype.send = function (peer, message, cb) {
  bump(counts.dht, message.y === 'q' ? `q:${message.q}` : String(message.y))
  return send.call(this, peer, message, cb)
}

function dump () {
  if (!dir) return
  const file = path.join(dir, `${process.pid}.json`)
  fs.writeFileSync(file + '.tmp', JSON.stringify(counts))
  fs.renameSync(file + '.tmp', file)
}
setInterval(dump, 200).unref()
process.on('exit', dump)
