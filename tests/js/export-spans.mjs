// Export a small trace with the OpenTelemetry JavaScript SDK to a hoptrace collector.
//
//   OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<ingest token> \
//     node export-spans.mjs <collector-url> <json|proto> <service.name> [gzip]
//
// The spans go through the SDK's real OTLP/HTTP exporter (JSON or protobuf), which reads its
// headers from the standard environment variables as it would in any Node service. The script
// prints one JSON line describing what it created (ids, parents, names) for the Python test to
// check against the collector's query API, and exits non-zero if any export did not succeed.
// The spans mirror the Python SDK's in tests/integration/test_real_clients.py: keep them alike.

import { context, trace, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

const [url, protocol, service, compression] = process.argv.slice(2);
if (!url || !['json', 'proto'].includes(protocol) || !service) {
  console.error('usage: node export-spans.mjs <collector-url> <json|proto> <service.name> [gzip]');
  process.exit(2);
}

const Exporter = protocol === 'json' ? JsonExporter : ProtoExporter;
const otlp = new Exporter({
  url: `${url}/v1/traces`,
  compression: compression === 'gzip' ? 'gzip' : 'none',
  timeoutMillis: 10000,
});

// Every export's result, so a refused export fails the script instead of vanishing in a log.
const results = [];
const checked = {
  export(spans, done) {
    otlp.export(spans, (result) => {
      results.push({ code: result.code, error: result.error ? String(result.error) : undefined });
      done(result);
    });
  },
  shutdown: () => otlp.shutdown(),
  forceFlush: () => otlp.forceFlush(),
};

const recorded = new InMemorySpanExporter();
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': service, 'deployment.environment': 'test' }),
  spanProcessors: [new SimpleSpanProcessor(recorded), new BatchSpanProcessor(checked)],
});
const tracer = provider.getTracer('hoptrace-js-test', '1.0.0');

const root = tracer.startSpan('GET /orders/{id}', {
  kind: SpanKind.SERVER,
  attributes: {
    'http.request.method': 'GET',
    'http.route': '/orders/{id}',
    'http.response.status_code': 200,
    'hoptrace.label.order_id': `js-${service}`,
    'test.ratio': 0.25,
    'test.flag': true,
    'test.tags': ['a', 'b', 'c'],
  },
});
root.addEvent('cache.miss', { 'cache.key': 'order:42', 'cache.size': 3 });
const rootContext = trace.setSpan(context.active(), root);

const child = tracer.startSpan(
  'SELECT orders',
  { kind: SpanKind.CLIENT, attributes: { 'db.system': 'postgresql', 'db.operation.name': 'SELECT' } },
  rootContext,
);
child.setStatus({ code: SpanStatusCode.ERROR, message: 'deadlock detected' });
child.end();

// A consumer in a trace of its own, linked to the request that produced its message.
const consumer = tracer.startSpan(
  'orders process',
  {
    kind: SpanKind.CONSUMER,
    root: true,
    attributes: { 'messaging.system': 'aws_sqs', 'messaging.message.id': `msg-${service}` },
    links: [{ context: root.spanContext(), attributes: { 'link.reason': 'produced-by' } }],
  },
);
consumer.end();
root.end();

// A refused export rejects the flush; the results above say why, so carry on and report it.
let flushError;
try {
  await provider.forceFlush();
} catch (error) {
  flushError = String(error);
}
const finished = recorded.getFinishedSpans(); // read before shutdown, which clears it
await provider.shutdown().catch(() => {});

const failed = results.filter((r) => r.code !== 0);
const spans = finished.map((s) => ({
  name: s.name,
  trace_id: s.spanContext().traceId,
  span_id: s.spanContext().spanId,
  parent_span_id: s.parentSpanContext ? s.parentSpanContext.spanId : null,
}));
console.log(JSON.stringify({ exports: results.length, failed, flushError, spans }));
process.exit(failed.length || flushError || results.length === 0 ? 1 : 0);
