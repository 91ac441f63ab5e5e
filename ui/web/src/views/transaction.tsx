// One transaction: every span of every trace it reached, grouped per invocation, the waits
// between producer and consumer as dwell bars, its hops, its own small map and a span drawer.
import { useState } from "preact/hooks";
import { CopyButton, Drawer, ErrorBox, Link, Loading } from "../common";
import { ms, plural, show, when } from "../format";
import { type Selection, ServiceMapGraph } from "../graph";
import { useApi } from "../hooks";
import { carryRange, type Location, navigate, withParams } from "../router";
import { TransactionsOfTrace } from "../membership";
import { SpanDetails } from "../spandetails";
import { Timeline } from "../timeline";
import type { Window } from "../timerange";
import type { TransactionDetail } from "../types";
import { ElementList } from "./map";

export function TransactionView(props: { location: Location; window: Window; tick: number; id: string }) {
  const { location, id } = props;
  const result = useApi<TransactionDetail>(`/transactions/${encodeURIComponent(id)}`);
  const [mapSelection, setMapSelection] = useState<Selection>(null);
  const selectedId = location.params.get("span");
  const data = result.data;
  const spans = data?.spans ?? [];
  const hops = data?.hops ?? [];
  const selected = spans.find((s) => s.span_id === selectedId) ?? null;
  const spanName = new Map(spans.map((s) => [s.span_id, `${s.service} · ${s.name}`]));
  const traces = [...new Set(spans.map((s) => s.trace_id))];
  return (
    <div class={`view${selected ? " with-drawer" : ""}`}>
      <h1>
        Transaction <code>{id}</code> <CopyButton text={id} label="transaction id" />
      </h1>
      {result.error ? <ErrorBox error={result.error} what="this transaction" /> : null}
      {result.loading && !data ? <Loading what="the transaction" /> : null}
      {data ? (
        <>
          <p class="summary" data-testid="transaction-summary">
            {plural(spans.length, "span")} in {plural(traces.length, "trace")} · {plural(hops.length, "hop")}
            {typeof data.duration_ms === "number" ? ` · ${ms(data.duration_ms)} end to end` : ""}
            {data.start ? ` · started ${when(show(data.start))}` : ""}
          </p>
          {data.map && data.map.nodes?.length ? (
            <details class="small-map" open>
              <summary>Its map</summary>
              <ServiceMapGraph
                map={data.map}
                minutes={0}
                selection={mapSelection}
                onSelect={setMapSelection}
                height={260}
                testid="transaction-map"
              />
              <ElementList map={data.map} minutes={0} onSelect={setMapSelection} />
            </details>
          ) : null}
          <h2>Timeline</h2>
          {data.spans_truncated ? (
            <p class="muted">This transaction has more spans than one page shows; the first {spans.length} are drawn.</p>
          ) : null}
          <Timeline
            spans={spans}
            hops={hops}
            logs={data.logs ?? []}
            grouped
            selected={selectedId}
            onSelect={(span) => navigate(withParams(location, { span: span.span_id }), true)}
          />
          {hops.length ? (
            <>
              <h2>Hops</h2>
              <table class="results" data-testid="transaction-hops">
                <thead>
                  <tr>
                    <th scope="col">From</th>
                    <th scope="col">To</th>
                    <th scope="col">Joined by</th>
                    <th scope="col">Wait</th>
                  </tr>
                </thead>
                <tbody>
                  {hops.map((hop, i) => (
                    <tr key={i}>
                      <td>{spanName.get(hop.from_span) ?? hop.from_span}</td>
                      <td>{spanName.get(hop.to_span) ?? hop.to_span}</td>
                      <td>{hop.via}</td>
                      <td class="num">{ms(hop.dwell_ms ?? null)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          ) : null}
          <h2>Traces</h2>
          <ul class="trace-ids">
            {traces.map((t) => (
              <li key={t}>
                <Link href={carryRange(location, `/traces/${t}`)}>
                  <code>{t}</code>
                </Link>{" "}
                <CopyButton text={t} label="trace id" />
              </li>
            ))}
          </ul>
        </>
      ) : null}
      {selected ? (
        <Drawer title="Span" testid="span-drawer" onClose={() => navigate(withParams(location, { span: null }), true)}>
          <TransactionsOfTrace key={selected.trace_id} location={location} traceId={selected.trace_id} current={id} />
          <SpanDetails span={selected} />
        </Drawer>
      ) : null}
    </div>
  );
}
