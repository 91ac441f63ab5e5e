// The span drawer's content: identity, status, labels, attributes, exceptions with their stack,
// captured payloads, links and the resource. All values are text.
import { CopyButton, Id, KeyValues, Link } from "./common";
import { ms, show, when } from "./format";
import type { Span } from "./types";

const LABEL = "hoptrace.label.";
const PAYLOAD = "hoptrace.payload.";

export function SpanDetails(props: { span: Span }) {
  const { span } = props;
  const labels: Record<string, unknown> = {};
  const payloads: Record<string, unknown> = {};
  const rest: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(span.attributes)) {
    if (key.startsWith(LABEL)) labels[key.slice(LABEL.length)] = value;
    else if (key.startsWith(PAYLOAD)) payloads[key.slice(PAYLOAD.length)] = value;
    else rest[key] = value;
  }
  const exceptions = span.events.filter((e) => e.name === "exception");
  const otherEvents = span.events.filter((e) => e.name !== "exception");
  const error = span.status.code === "ERROR";
  return (
    <div class="span-details" data-testid="span-details">
      <p class="span-title">
        <span class="service">{span.service}</span> <strong>{span.name}</strong>{" "}
        <span class="badge">{span.kind}</span>{" "}
        <span class={error ? "badge bad" : "badge"}>{span.status.code}</span>
      </p>
      {span.status.message ? <p class="status-message">{span.status.message}</p> : null}
      <dl class="facts">
        <dt>Start</dt>
        <dd>{when(span.start)}</dd>
        <dt>Duration</dt>
        <dd>{ms(span.duration_ms)}</dd>
        <dt>Trace</dt>
        <dd>
          <Link href={`/traces/${span.trace_id}?span=${span.span_id}`}>
            <code>{span.trace_id}</code>
          </Link>{" "}
          <CopyButton text={span.trace_id} label="trace id" />
        </dd>
        <dt>Span</dt>
        <dd>
          <Id value={span.span_id} label="span id" />
        </dd>
        {span.parent_span_id ? (
          <>
            <dt>Parent</dt>
            <dd>
              <Id value={span.parent_span_id} label="parent span id" />
            </dd>
          </>
        ) : null}
      </dl>
      {Object.keys(labels).length ? (
        <section>
          <h3>Labels</h3>
          <KeyValues values={labels} testid="span-labels" />
        </section>
      ) : null}
      {exceptions.length ? (
        <section>
          <h3>Exceptions</h3>
          {exceptions.map((event, i) => (
            <div class="exception" key={i}>
              <p>
                <strong>{show(event.attributes["exception.type"]) || "exception"}</strong>:{" "}
                {show(event.attributes["exception.message"])}
              </p>
              {event.attributes["exception.stacktrace"] ? (
                <pre class="stack">{show(event.attributes["exception.stacktrace"])}</pre>
              ) : null}
              <p class="muted">{when(event.time)}</p>
            </div>
          ))}
        </section>
      ) : null}
      {Object.keys(payloads).length ? (
        <section>
          <h3>Captured payloads</h3>
          {Object.entries(payloads).map(([key, value]) => (
            <div key={key}>
              <h4>{key}</h4>
              <pre class="payload">{show(value)}</pre>
            </div>
          ))}
        </section>
      ) : null}
      <section>
        <h3>Attributes</h3>
        <KeyValues values={rest} testid="span-attributes" />
      </section>
      {otherEvents.length ? (
        <section>
          <h3>Events</h3>
          <ul class="events">
            {otherEvents.map((event, i) => (
              <li key={i}>
                <strong>{event.name}</strong> <span class="muted">{when(event.time)}</span>
                <KeyValues values={event.attributes} />
              </li>
            ))}
          </ul>
        </section>
      ) : null}
      {span.links.length ? (
        <section>
          <h3>Links ({span.links.length})</h3>
          {span.links.length > 1 ? (
            <p class="muted">A batch: this span belongs to the transactions of each linked producer.</p>
          ) : null}
          <ul class="links">
            {span.links.map((link) => (
              <li key={`${link.trace_id}:${link.span_id}`}>
                <Link href={`/traces/${link.trace_id}?span=${link.span_id}`}>
                  <code>
                    {link.trace_id} / {link.span_id}
                  </code>
                </Link>
              </li>
            ))}
          </ul>
        </section>
      ) : null}
      <section>
        <h3>Resource</h3>
        <KeyValues values={span.resource} testid="span-resource" />
      </section>
    </div>
  );
}
