#!/usr/bin/env node
// The CDK app: one stack, the same resources as infra/template.yaml.
//
// Build the functions first (from the repository root):
//   cargo lambda build --release --arm64 --lambda-dir target/lambda
// then `npx cdk deploy` here. `-c lambdaDir=DIR` points at another build output;
// `-c allowMissingAssets=true` synthesizes without built functions (CI lint only: such a
// template cannot be deployed).
'use strict';
const cdk = require('aws-cdk-lib');
const { ParquetryStack } = require('../lib/parquetry-stack');

const app = new cdk.App();
new ParquetryStack(app, app.node.tryGetContext('stackName') || 'parquetry', {
  lambdaDir: app.node.tryGetContext('lambdaDir'),
  allowMissingAssets: String(app.node.tryGetContext('allowMissingAssets')) === 'true',
  description:
    'Parquetry: a Loki-compatible log store on S3 (push and query Lambda functions behind an HTTP API, '
    + 'a scheduled compactor).',
});
