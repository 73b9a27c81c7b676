'use strict';
// The Parquetry stack in CDK, resource for resource the same as infra/template.yaml (keep the
// two in step): an S3 bucket, a push and a query function (provided.al2023, arm64), an HTTP API
// routing Loki's push routes to push and the other /loki/api/v1/* routes to query, one optional
// protection of the URL (shared secret or IAM), a compactor and a ruler function on EventBridge
// schedules, least-privilege roles.
const fs = require('fs');
const path = require('path');
const cdk = require('aws-cdk-lib');
const { Fn, Aws, CfnParameter, CfnCondition, CfnRule, CfnOutput, Duration, RemovalPolicy } = cdk;
const s3 = cdk.aws_s3;
const iam = cdk.aws_iam;
const lambda = cdk.aws_lambda;
const logs = cdk.aws_logs;
const apigw = cdk.aws_apigatewayv2;
const events = cdk.aws_events;
const targets = cdk.aws_events_targets;

class ParquetryStack extends cdk.Stack {
  constructor(scope, id, props) {
    super(scope, id, props);

    const retentionDays = new CfnParameter(this, 'RetentionDays', {
      type: 'Number', default: 31, minValue: 1,
      description: 'S3 lifecycle backstop: objects are deleted this many days after they were written.',
    });
    const partitionLabels = new CfnParameter(this, 'PartitionLabels', {
      type: 'String', default: 'service_name',
      allowedPattern: '^[a-zA-Z_][a-zA-Z0-9_]*(,[a-zA-Z_][a-zA-Z0-9_]*)*$',
      description: 'Comma-separated stream labels whose values partition object keys.',
    });
    const tenantHeaderRequired = new CfnParameter(this, 'TenantHeaderRequired', {
      type: 'String', default: 'false', allowedValues: ['true', 'false'],
      description: "Loki's auth_enabled: require X-Scope-OrgID and keep tenants apart.",
    });
    const apiAuth = new CfnParameter(this, 'ApiAuth', {
      type: 'String', default: 'token', allowedValues: ['token', 'iam', 'none'],
      description: 'token: shared secret (AuthToken); iam: API Gateway IAM auth; none: open (testing only).',
    });
    const authToken = new CfnParameter(this, 'AuthToken', {
      type: 'String', default: '', noEcho: true,
      allowedPattern: '^$|^[A-Za-z0-9._~+/=-]{16,}(,[A-Za-z0-9._~+/=-]{16,})*$',
      constraintDescription: 'empty, or secrets of at least 16 characters, comma-separated',
      description: 'Shared secret(s) for ApiAuth=token: bearer token or basic-auth password.',
    });
    const retentionPeriodDays = new CfnParameter(this, 'RetentionPeriodDays', {
      type: 'Number', default: 0, minValue: 0,
      description: 'Retention the compactor enforces (limits_config.retention_period, in days); '
        + '0 turns its retention pass off and leaves deletion to the S3 lifecycle backstop (RetentionDays).',
    });
    const compactionSchedule = new CfnParameter(this, 'CompactionSchedule', {
      type: 'String', default: 'rate(10 minutes)', allowedPattern: '^(rate|cron)\\(.+\\)$',
      description: 'How often the compactor runs (an EventBridge schedule expression).',
    });
    const rulerSchedule = new CfnParameter(this, 'RulerSchedule', {
      type: 'String', default: 'rate(1 minute)', allowedPattern: '^(rate|cron)\\(.+\\)$',
      description: "How often the ruler function evaluates every rule group (Loki's ruler.evaluation_interval).",
    });
    const alertmanagerUrl = new CfnParameter(this, 'AlertmanagerUrl', {
      type: 'String', default: '',
      description: 'Alertmanager base URLs, comma-separated (ruler.alertmanager_url); empty: alerts go nowhere.',
    });
    const remoteWriteUrl = new CfnParameter(this, 'RemoteWriteUrl', {
      type: 'String', default: '',
      description: 'Prometheus remote-write URL for recording rules (ruler.remote_write.client.url); empty: not written.',
    });
    const logLevel = new CfnParameter(this, 'LogLevel', {
      type: 'String', default: 'info', allowedValues: ['debug', 'info', 'warn', 'error'],
    });
    const pushMemory = new CfnParameter(this, 'PushMemorySize', {
      type: 'Number', default: 1024, minValue: 128, maxValue: 10240,
    });
    const queryMemory = new CfnParameter(this, 'QueryMemorySize', {
      type: 'Number', default: 2048, minValue: 128, maxValue: 10240,
    });
    const queryFanoutLeaves = new CfnParameter(this, 'QueryFanoutLeaves', {
      type: 'Number', default: 32, minValue: 0,
      description: 'Most leaves a query is split into (query_range.fanout_leaves); each leaf is a ' +
        'synchronous invocation of the query function itself. 0 or 1: no fan-out.',
    });
    const queryFanoutTargetBytes = new CfnParameter(this, 'QueryFanoutTargetBytes', {
      type: 'String', default: '1GB', allowedPattern: '^[0-9]+(B|KB|MB|GB|KiB|MiB|GiB)?$',
      description: 'Raw log bytes one leaf should scan (query_range.fanout_target_bytes).',
    });
    const queryReservedConcurrency = new CfnParameter(this, 'QueryReservedConcurrency', {
      type: 'Number', default: 0, minValue: 0,
      description: 'Reserved concurrency of the query function, roots and leaves together; ' +
        '0: unreserved.',
    });
    const compactorMemory = new CfnParameter(this, 'CompactorMemorySize', {
      type: 'Number', default: 3008, minValue: 128, maxValue: 10240,
      description: 'Memory of the compactor function (a merge holds up to 256 MiB of input).',
    });
    const logRetention = new CfnParameter(this, 'LogRetentionInDays', {
      type: 'Number', default: '14',
      allowedValues: ['1', '3', '5', '7', '14', '30', '60', '90', '120', '150', '180', '365'],
      description: "Retention of the functions' own CloudWatch logs.",
    });

    new CfnRule(this, 'TokenModeNeedsToken', {
      ruleCondition: Fn.conditionEquals(apiAuth.valueAsString, 'token'),
      assertions: [{
        assert: Fn.conditionNot(Fn.conditionEquals(authToken.valueAsString, '')),
        assertDescription: 'ApiAuth=token needs an AuthToken of at least 16 characters.',
      }],
    });
    const useIam = new CfnCondition(this, 'UseIamAuth', {
      expression: Fn.conditionEquals(apiAuth.valueAsString, 'iam'),
    });
    const useToken = new CfnCondition(this, 'UseTokenAuth', {
      expression: Fn.conditionEquals(apiAuth.valueAsString, 'token'),
    });
    const useRetention = new CfnCondition(this, 'UseRetention', {
      expression: Fn.conditionNot(Fn.conditionEquals(retentionPeriodDays.valueAsString, '0')),
    });
    const hasAlertmanager = new CfnCondition(this, 'HasAlertmanager', {
      expression: Fn.conditionNot(Fn.conditionEquals(alertmanagerUrl.valueAsString, '')),
    });
    const hasRemoteWrite = new CfnCondition(this, 'HasRemoteWrite', {
      expression: Fn.conditionNot(Fn.conditionEquals(remoteWriteUrl.valueAsString, '')),
    });
    const hasQueryReservedConcurrency = new CfnCondition(this, 'HasQueryReservedConcurrency', {
      expression: Fn.conditionNot(Fn.conditionEquals(queryReservedConcurrency.valueAsNumber, 0)),
    });

    const bucket = new s3.Bucket(this, 'LogBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      bucketKeyEnabled: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [
        // Log objects only: rule groups and alert state (ruler/) must not expire.
        { id: 'retention-backstop', prefix: 'v1/', expiration: Duration.days(retentionDays.valueAsNumber) },
        { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
    });

    const lambdaDir = path.resolve(__dirname, '..', props.lambdaDir || '../../target/lambda');
    const code = (binary) => {
      const dir = path.join(lambdaDir, binary);
      if (fs.existsSync(path.join(dir, 'bootstrap'))) {
        return lambda.Code.fromAsset(dir);
      }
      if (props.allowMissingAssets) {
        return lambda.Code.fromAsset(path.join(__dirname, '..', 'missing-asset'));
      }
      throw new Error(
        `${dir}/bootstrap not found: run \`cargo lambda build --release --arm64 --lambda-dir target/lambda\` ` +
        'at the repository root first (or pass -c lambdaDir=DIR)');
    };

    const environment = {
      PARQUETRY__STORAGE__URL: `s3://${bucket.bucketName}`,
      PARQUETRY__STORAGE__PARTITION_LABELS: `[${partitionLabels.valueAsString}]`,
      PARQUETRY__AUTH_ENABLED: tenantHeaderRequired.valueAsString,
      PARQUETRY__SERVER__LOG_LEVEL: logLevel.valueAsString,
      PARQUETRY_AUTH_TOKEN: Fn.conditionIf(useToken.logicalId, authToken.valueAsString, Aws.NO_VALUE).toString(),
      AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH: 'true',
    };

    const fn = (name, binary, memory, description, extra = {}) => {
      const logGroup = new logs.CfnLogGroup(this, `${name}LogGroup`, {
        logGroupName: `/aws/lambda/${Aws.STACK_NAME}-${binary}`,
        retentionInDays: logRetention.valueAsNumber,
      });
      const f = new lambda.Function(this, `${name}Function`, {
        functionName: `${Aws.STACK_NAME}-${binary}`,
        description,
        runtime: lambda.Runtime.PROVIDED_AL2023,
        architecture: lambda.Architecture.ARM_64,
        handler: 'bootstrap',
        code: code(binary),
        memorySize: memory.valueAsNumber,
        timeout: Duration.seconds(29),
        environment,
        loggingFormat: lambda.LoggingFormat.JSON,
        logGroup: logs.LogGroup.fromLogGroupName(this, `${name}LogGroupRef`, logGroup.ref),
        ...extra,
      });
      return f;
    };

    const push = fn('Push', 'push', pushMemory, 'Loki push API (/loki/api/v1/push, /api/prom/push) and OTLP logs (/otlp/v1/logs)');
    // A root answers within API Gateway's 30 s (timeout 29 s); its leaves, invocations of the
    // same function, are given up on after 25 s by the transport: leaf < root < API Gateway.
    const query = fn('Query', 'query', queryMemory, 'Loki query API (/loki/api/v1/query_range, labels, series, ...)', {
      environment: {
        ...environment,
        PARQUETRY__QUERY_RANGE__FANOUT_TRANSPORT: 'lambda',
        PARQUETRY__QUERY_RANGE__FANOUT_LEAVES: queryFanoutLeaves.valueAsString,
        PARQUETRY__QUERY_RANGE__FANOUT_TARGET_BYTES: queryFanoutTargetBytes.valueAsString,
      },
    });
    query.node.defaultChild.addPropertyOverride('ReservedConcurrentExecutions', Fn.conditionIf(
      hasQueryReservedConcurrency.logicalId, queryReservedConcurrency.valueAsNumber, Aws.NO_VALUE));
    // Fan-out: leaves are invocations of this function. The ARN is built from the name: the
    // function's own ARN would make its role's policy, and so the function, depend on itself.
    query.addToRolePolicy(new iam.PolicyStatement({
      actions: ['lambda:InvokeFunction'],
      resources: [`arn:${Aws.PARTITION}:lambda:${Aws.REGION}:${Aws.ACCOUNT_ID}:function:${Aws.STACK_NAME}-query`],
    }));
    // Writes new objects only; reads and lists only.
    push.addToRolePolicy(new iam.PolicyStatement({
      actions: ['s3:PutObject'], resources: [bucket.arnForObjects('*')],
    }));
    query.addToRolePolicy(new iam.PolicyStatement({
      actions: ['s3:GetObject'], resources: [bucket.arnForObjects('*')],
    }));
    query.addToRolePolicy(new iam.PolicyStatement({
      actions: ['s3:ListBucket'], resources: [bucket.bucketArn],
    }));
    // The delete API stores requests (POST/PUT) and cancels them (DELETE): those objects only.
    query.addToRolePolicy(new iam.PolicyStatement({
      actions: ['s3:PutObject', 's3:DeleteObject'],
      resources: [bucket.arnForObjects('v1/tenant=*/_deletes/*')],
    }));
    // The ruler API (/loki/api/v1/rules) stores and deletes rule groups.
    query.addToRolePolicy(new iam.PolicyStatement({
      actions: ['s3:PutObject', 's3:DeleteObject'],
      resources: [bucket.arnForObjects('ruler/rules/*')],
    }));

    // Reads, lists, writes (cold objects, manifests) and deletes (absorbed objects, expired
    // days). One run at a time; a missed or throttled run is not queued, the next one does the
    // work.
    const { PARQUETRY_AUTH_TOKEN: _httpOnly, ...compactorBase } = environment;
    const compactor = fn('Compactor', 'compactor', compactorMemory,
      'Compaction and retention passes over the log bucket, on a schedule', {
        timeout: Duration.seconds(900),
        reservedConcurrentExecutions: 1,
        maxEventAge: Duration.seconds(60),
        retryAttempts: 0,
        environment: {
          ...compactorBase,
          PARQUETRY__COMPACTOR__RETENTION_ENABLED:
            Fn.conditionIf(useRetention.logicalId, 'true', 'false').toString(),
          PARQUETRY__LIMITS_CONFIG__RETENTION_PERIOD: `${retentionPeriodDays.valueAsString}d`,
        },
      });
    compactor.addToRolePolicy(new iam.PolicyStatement({
      actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'], resources: [bucket.arnForObjects('*')],
    }));
    compactor.addToRolePolicy(new iam.PolicyStatement({
      actions: ['s3:ListBucket'], resources: [bucket.bucketArn],
    }));
    new events.Rule(this, 'CompactorSchedule', {
      description: 'Runs a Parquetry compaction (and retention) pass',
      schedule: events.Schedule.expression(compactionSchedule.valueAsString),
      targets: [new targets.LambdaFunction(compactor)],
    });

    // Reads and lists (logs, rule groups, alert state); writes alert state only. One run at a
    // time: each run reads, advances and writes back the alert state.
    const ruler = fn('Ruler', 'ruler', queryMemory,
      "Alerting and recording rules (Loki's ruler), one evaluation pass per schedule", {
        timeout: Duration.seconds(120),
        reservedConcurrentExecutions: 1,
        maxEventAge: Duration.seconds(60),
        retryAttempts: 0,
        environment: {
          ...compactorBase,
          PARQUETRY__RULER__ALERTMANAGER_URL:
            Fn.conditionIf(hasAlertmanager.logicalId, alertmanagerUrl.valueAsString, Aws.NO_VALUE).toString(),
          PARQUETRY__RULER__REMOTE_WRITE__ENABLED:
            Fn.conditionIf(hasRemoteWrite.logicalId, 'true', 'false').toString(),
          PARQUETRY__RULER__REMOTE_WRITE__CLIENT__URL:
            Fn.conditionIf(hasRemoteWrite.logicalId, remoteWriteUrl.valueAsString, Aws.NO_VALUE).toString(),
        },
      });
    ruler.addToRolePolicy(new iam.PolicyStatement({
      actions: ['s3:GetObject'], resources: [bucket.arnForObjects('*')],
    }));
    ruler.addToRolePolicy(new iam.PolicyStatement({
      actions: ['s3:ListBucket'], resources: [bucket.bucketArn],
    }));
    ruler.addToRolePolicy(new iam.PolicyStatement({
      actions: ['s3:PutObject'], resources: [bucket.arnForObjects('ruler/state/*')],
    }));
    new events.Rule(this, 'RulerEvaluationSchedule', {
      description: 'Runs one Parquetry ruler evaluation pass',
      schedule: events.Schedule.expression(rulerSchedule.valueAsString),
      targets: [new targets.LambdaFunction(ruler)],
    });

    const api = new apigw.CfnApi(this, 'HttpApi', {
      name: `${Aws.STACK_NAME}-loki`,
      protocolType: 'HTTP',
      description: 'Loki HTTP API served by Parquetry',
    });
    new apigw.CfnStage(this, 'HttpApiStage', { apiId: api.ref, stageName: '$default', autoDeploy: true });
    const integration = (name, f) => new apigw.CfnIntegration(this, `${name}Integration`, {
      apiId: api.ref,
      integrationType: 'AWS_PROXY',
      integrationUri: f.functionArn,
      payloadFormatVersion: '2.0',
      timeoutInMillis: 30000,
    });
    const pushIntegration = integration('Push', push);
    const queryIntegration = integration('Query', query);
    const authorizationType = Fn.conditionIf(useIam.logicalId, 'AWS_IAM', 'NONE').toString();
    const route = (name, routeKey, target) => new apigw.CfnRoute(this, name, {
      apiId: api.ref, routeKey, authorizationType, target: `integrations/${target.ref}`,
    });
    route('PushRoute', 'POST /loki/api/v1/push', pushIntegration);
    route('LegacyPushRoute', 'POST /api/prom/push', pushIntegration);
    route('OtlpLogsRoute', 'POST /otlp/v1/logs', pushIntegration);
    // Every other Loki route; the more specific push route wins for POST .../push.
    route('DeleteRoute', 'ANY /loki/api/v1/delete', queryIntegration);
    route('QueryRoute', 'ANY /loki/api/v1/{proxy+}', queryIntegration);
    // The ruler's Prometheus-compatible views (rules, alerts), as Grafana reads them.
    route('PrometheusRulesRoute', 'ANY /prometheus/api/v1/{proxy+}', queryIntegration);

    const sourceArn = `arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${api.ref}/*/*`;
    for (const [name, f] of [['Push', push], ['Query', query]]) {
      new lambda.CfnPermission(this, `${name}InvokePermission`, {
        action: 'lambda:InvokeFunction',
        functionName: f.functionName,
        principal: 'apigateway.amazonaws.com',
        sourceArn,
      });
    }

    const base = `https://${api.ref}.execute-api.${Aws.REGION}.${Aws.URL_SUFFIX}`;
    new CfnOutput(this, 'PushUrl', { value: `${base}/loki/api/v1/push`, description: 'Point Promtail / Alloy / Fluent Bit here.' });
    new CfnOutput(this, 'GrafanaDatasourceUrl', { value: base, description: 'URL of a Grafana Loki data source.' });
    new CfnOutput(this, 'BucketName', { value: bucket.bucketName });
    new CfnOutput(this, 'PushFunctionName', { value: push.functionName });
    new CfnOutput(this, 'QueryFunctionName', { value: query.functionName });
    new CfnOutput(this, 'CompactorFunctionName', { value: compactor.functionName });
    new CfnOutput(this, 'RulerFunctionName', { value: ruler.functionName });
  }
}

module.exports = { ParquetryStack };
