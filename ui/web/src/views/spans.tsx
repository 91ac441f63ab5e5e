// Span search: every filter of GET /api/v1/spans, kept in the URL, newest first, cursor pages.
import { useState } from "preact/hooks";
import { ErrorBox, HowToSendData, Link, Loading, Pager } from "../common";
import { apiFilters, FilterForm, type SortDir, SortHeader, sortRows } from "../filters";
import { ms, when } from "../format";
import { useApi } from "../hooks";
import { carryRange, type Location } from "../router";
import type { Window } from "../timerange";
import type { ServicesResponse, Span, SpanSearchResponse } from "../types";

const FILTERS = ["service", "name", "status", "min_ms", "max_ms", "q", "cursor", "limit"];

export function ServiceOptions(props: { window: Window; tick: number }) {
  const services = useApi<ServicesResponse>(
    "/services",
    { from: Math.floor(props.window.from), to: Math.ceil(props.window.to) },
    props.tick,
  );
  return (
    <datalist id="service-names">
      {(services.data?.services ?? []).map((s) => (
        <option value={s.name} key={s.name} />
      ))}
    </datalist>
  );
}

function value(span: Span, column: string): number | string {
  switch (column) {
    case "start":
      return span.start_unix_nano.padStart(24, "0");
    case "duration":
      return span.duration_ms;
    case "service":
      return span.service;
    case "name":
      return span.name;
    default:
      return span.status.code;
  }
}

export function SpansView(props: { location: Location; window: Window; tick: number }) {
  const { location, window } = props;
  const params = apiFilters(location, FILTERS, window);
  const result = useApi<SpanSearchResponse>("/spans", params, props.tick);
  const [sort, setSort] = useState<[string, SortDir]>(["start", "desc"]);
  const filtered = FILTERS.some((f) => f !== "cursor" && location.params.get(f)) || location.params.toString().includes("label.");
  return (
    <div class="view">
      <h1>Spans</h1>
      <ServiceOptions window={window} tick={props.tick} />
      <FilterForm
        key={location.params.toString()}
        location={location}
        label="Span filters"
        testid="span-filters"
        fields={[
          { name: "service", label: "Service", list: "service-names", placeholder: "any" },
          { name: "name", label: "Span name", placeholder: "any" },
          {
            name: "status",
            label: "Status",
            type: "select",
            options: [
              { value: "", label: "any" },
              { value: "error", label: "error" },
              { value: "ok", label: "ok" },
              { value: "unset", label: "unset" },
            ],
          },
          { name: "min_ms", label: "Min ms", type: "number" },
          { name: "max_ms", label: "Max ms", type: "number" },
          { name: "q", label: "Any id", placeholder: "trace, request, message id…" },
        ]}
      />
      {result.error ? <ErrorBox error={result.error} what="spans" /> : null}
      {result.loading && !result.data ? <Loading what="spans" /> : null}
      {result.data && result.data.spans.length === 0 ? (
        filtered || location.params.get("cursor") ? (
          <p class="empty-result" data-testid="no-results">
            No span matches these filters in {window.label.toLowerCase()}.
          </p>
        ) : (
          <HowToSendData title="No spans in this time range" />
        )
      ) : null}
      {result.data && result.data.spans.length ? (
        <>
          <table class="results" data-testid="span-results">
            <caption class="muted">
              {result.data.spans.length} spans{result.data.next_cursor ? " on this page" : ""}, newest first
            </caption>
            <thead>
              <tr>
                <SortHeader label="Start" column="start" sort={sort} onSort={setSort} />
                <SortHeader label="Service" column="service" sort={sort} onSort={setSort} />
                <SortHeader label="Span" column="name" sort={sort} onSort={setSort} />
                <th scope="col">Kind</th>
                <SortHeader label="Duration" column="duration" sort={sort} onSort={setSort} />
                <SortHeader label="Status" column="status" sort={sort} onSort={setSort} />
              </tr>
            </thead>
            <tbody>
              {sortRows(result.data.spans, sort, value).map((span) => (
                <tr key={`${span.trace_id}:${span.span_id}`} class={span.status.code === "ERROR" ? "error" : ""}>
                  <td class="nowrap">{when(span.start)}</td>
                  <td>{span.service}</td>
                  <td>
                    <Link href={carryRange(location, `/traces/${span.trace_id}`, { span: span.span_id })}>
                      {span.name}
                    </Link>
                  </td>
                  <td>{span.kind}</td>
                  <td class="num">{ms(span.duration_ms)}</td>
                  <td>{span.status.code}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <Pager location={location} next={result.data.next_cursor} noun="spans" />
        </>
      ) : null}
    </div>
  );
}
