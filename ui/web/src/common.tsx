// Small pieces every view uses. Everything from the API is rendered as text children (Preact
// escapes them); nothing here ever sets HTML from data.
import type { ComponentChildren } from "preact";
import { useLayoutEffect, useRef, useState } from "preact/hooks";
import type { ApiError } from "./api";
import { show } from "./format";
import { type Location, navigate, withParams } from "./router";

export function Link(props: { href: string; children: ComponentChildren; class?: string; title?: string }) {
  return (
    <a
      href={props.href}
      class={props.class}
      title={props.title}
      onClick={(event) => {
        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
        event.preventDefault();
        navigate(props.href);
      }}
    >
      {props.children}
    </a>
  );
}

export function ErrorBox(props: { error: ApiError; what?: string }) {
  const { error } = props;
  const status = error.status ? `HTTP ${error.status}` : "no answer";
  return (
    <div class="api-error" role="alert">
      <strong>{props.what ? `Could not load ${props.what}` : "The API answered with an error"}</strong>
      <div>
        <code>GET {error.path}</code> → {status}: <span class="error-detail">{error.detail}</span>
      </div>
      {error.status === 404 && error.detail === "Not Found" && error.path.match(/\/api\/v1\/(map|transactions)/) ? (
        <div class="hint">This collector does not serve this part of the API yet (it comes with the graph).</div>
      ) : null}
    </div>
  );
}

export function Loading(props: { what: string }) {
  return (
    <p class="loading" aria-live="polite">
      Loading {props.what}…
    </p>
  );
}

export function CopyButton(props: { text: string; label?: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      class="copy"
      title={`Copy ${props.text}`}
      aria-label={`Copy ${props.label ?? props.text}`}
      onClick={() => {
        navigator.clipboard?.writeText(props.text).then(
          () => {
            setDone(true);
            window.setTimeout(() => setDone(false), 1500);
          },
          () => undefined,
        );
      }}
    >
      {done ? "copied" : "copy"}
    </button>
  );
}

export function Id(props: { value: string; label?: string }) {
  return (
    <span class="id">
      <code>{props.value}</code> <CopyButton text={props.value} label={props.label} />
    </span>
  );
}

export function KeyValues(props: { values: Record<string, unknown>; caption?: string; testid?: string }) {
  const entries = Object.entries(props.values).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return <p class="muted">none</p>;
  return (
    <table class="kv" data-testid={props.testid}>
      {props.caption ? <caption>{props.caption}</caption> : null}
      <tbody>
        {entries.map(([key, value]) => (
          <tr key={key}>
            <th scope="row">{key}</th>
            <td>
              <span class="value">{show(value)}</span>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** What a user with no data sees: where to send spans and how. */
export function HowToSendData(props: { title?: string }) {
  const origin = window.location.origin;
  const lines = [
    "pip install hoptrace",
    `OTEL_EXPORTER_OTLP_ENDPOINT=${origin}`,
    "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
    "OTEL_SERVICE_NAME=checkout-api",
    "OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<ingest token>",
  ];
  return (
    <section class="empty" data-testid="how-to-send">
      <h2>{props.title ?? "No spans yet"}</h2>
      <p>
        This collector takes OTLP/HTTP at <code>{`${origin}/v1/traces`}</code> (protobuf or JSON), from hoptrace's
        instrumentation or any OpenTelemetry SDK. Configure the functions you want to trace with the standard
        variables:
      </p>
      <pre>{lines.join("\n")}</pre>
      <p class="muted">
        The ingest token comes from <code>hoptrace project create NAME</code>; leave the header out when the
        collector runs without tokens. Try it locally with <code>./scripts/demo.sh</code>, which sends orders through
        an emulated serverless shop.
      </p>
    </section>
  );
}

export function Drawer(props: { title: string; onClose: () => void; children: ComponentChildren; testid?: string }) {
  const close = useRef(props.onClose);
  close.current = props.onClose;
  // Escape closes the panel wherever the focus is (it does not steal focus from the list). A
  // layout effect, registered once: the key works from the moment the panel is on screen, and
  // no re-render leaves a moment without a listener.
  useLayoutEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (event.key === "Escape") close.current();
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, []);
  return (
    <div
      class="drawer"
      role="dialog"
      aria-label={props.title}
      data-testid={props.testid}
    >
      <header class="drawer-head">
        <h2>{props.title}</h2>
        <button type="button" onClick={props.onClose} aria-label="Close panel">
          ✕
        </button>
      </header>
      <div class="drawer-body">{props.children}</div>
    </div>
  );
}

/** The cursor pager of a search page: back to the newest page, and on to older ones while the
 * API gives a next cursor (the cursor lives in the URL, so a page can be shared). */
export function Pager(props: { location: Location; next: string | null | undefined; noun: string }) {
  const { location, next, noun } = props;
  return (
    <nav class="pager" aria-label="Pages">
      {location.params.get("cursor") ? <Link href={withParams(location, { cursor: null })}>« Newest</Link> : null}
      {next ? <Link href={withParams(location, { cursor: next })}>Older {noun} »</Link> : null}
    </nav>
  );
}
