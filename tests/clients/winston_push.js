// Pushes log lines through winston-loki (snappy-compressed protobuf), as a Node.js app would.
// Usage: node winston_push.js <base-url> <run-id> <count>
'use strict'
const winston = require('winston')
const LokiTransport = require('winston-loki')

// winston-loki silently falls back to JSON without snappy; this test is about protobuf.
require('snappy')

const [base, runId, count] = process.argv.slice(2)
let failed = false
const transport = new LokiTransport({
  host: base,
  labels: { app: 'winston-e2e', run: runId },
  json: false,
  batching: true,
  interval: 3600,
  replaceTimestamp: false,
  onConnectionError: (err) => { failed = true; console.error('push failed:', err && err.message) }
})
const logger = winston.createLogger({ level: 'debug', transports: [transport] })
const levels = ['info', 'warn', 'error', 'debug']
for (let i = 0; i < Number(count); i++) {
  logger.log({ level: levels[i % levels.length], message: `winston line ${i} run=${runId}` })
}
transport.close().then(() => {
  process.exit(failed ? 1 : 0)
}, (err) => {
  console.error('close failed:', err && err.message)
  process.exit(1)
})
