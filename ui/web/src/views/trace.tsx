// One trace: its spans on a timeline, the selected span's details in a drawer (?span= in the URL).
import { CopyButton, Drawer, ErrorBox, Loading } from "../common";
import { ms, when } from "../format";
import { useApi } from "../hooks";
import { type Location, navigate, withParams } from "../router";
import { SpanDetails } from "../spandetails";
import { TransactionsOfTrace } from "../membership";
import { Timeline } from "../timeline";
import type { TraceResponse } from "../types";

export function TraceView(props: { location: Location; traceId: string }) {
  const { location, traceId } = props;
  const trace = useApi<TraceResponse>(`/traces/${encodeURIComponent(traceId)}`);
  const selectedId = location.params.get("span");
  const spans = trace.data?.spans ?? [];
  const selected = spans.find((s) => s.span_id === selectedId) ?? null;
  const services = [...new Set(spans.map((s) => s.service))];
  const errors = spans.filter((s) => s.status.code === "ERROR").length;
  let duration = 0;
  if (spans.length) {
    const starts = spans.map((s) => BigInt(s.start_unix_nano));
    const ends = spans.map((s) => BigInt(s.end_unix_nano));
    const lo = starts.reduce((a, b) => (a < b ? a : b));
    const hi = ends.reduce((a, b) => (a > b ? a : b));
    duration = Number(hi - lo) / 1e6;
  }
  return (
    <div class={`view${selected ? " with-drawer" : ""}`}>
      <h1>
        Trace <code>{traceId}</code> <CopyButton text={traceId} label="trace id" />
      </h1>
      {trace.error ? <ErrorBox error={trace.error} what="this trace" /> : null}
      {trace.loading && !trace.data ? <Loading what="the trace" /> : null}
      {spans.length ? (
        <>
          <p class="summary" data-testid="trace-summary">
            {spans.length} spans · {services.length} services ({services.join(", ")}) · {ms(duration)} ·{" "}
            {errors ? <span class="bad">{errors === 1 ? "1 error" : `${errors} errors`}</span> : "no errors"} · started {when(spans[0].start)}
          </p>
          <TransactionsOfTrace location={location} traceId={traceId.toLowerCase()} />
          <Timeline
            spans={spans}
            grouped
            selected={selectedId}
            onSelect={(span) => navigate(withParams(location, { span: span.span_id }), true)}
          />
        </>
      ) : null}
      {selected ? (
        <Drawer title="Span" testid="span-drawer" onClose={() => navigate(withParams(location, { span: null }), true)}>
          <SpanDetails span={selected} />
        </Drawer>
      ) : null}
    </div>
  );
}
