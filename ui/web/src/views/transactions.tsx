// Transaction search: GET /api/v1/transactions with its filters in the URL, a sortable table.
import { useState } from "preact/hooks";
import { ErrorBox, HowToSendData, Link, Loading, Pager } from "../common";
import { apiFilters, FilterForm, type SortDir, SortHeader, sortRows } from "../filters";
import { ms, show, when } from "../format";
import { useApi } from "../hooks";
import { carryRange, type Location } from "../router";
import type { Window } from "../timerange";
import type { TransactionRow, TransactionSearchResponse } from "../types";
import { ServiceOptions } from "./spans";

const FILTERS = ["service", "resource", "status", "min_ms", "max_ms", "q", "cursor", "limit"];

export function entryText(entry: TransactionRow["entry"]): string {
  if (!entry) return "–";
  if (typeof entry === "string") return entry;
  return [show(entry.trigger), show(entry.name)].filter(Boolean).join(" ") || JSON.stringify(entry);
}

function value(t: TransactionRow, column: string): number | string {
  switch (column) {
    case "entry":
      return entryText(t.entry);
    case "duration":
      return t.duration_ms;
    case "services":
      return t.services.length;
    case "hops":
      return t.hops;
    case "errors":
      return t.errors;
    case "cold":
      return t.cold_starts ?? 0;
    default:
      return t.start;
  }
}

export function TransactionsView(props: { location: Location; window: Window; tick: number }) {
  const { location, window } = props;
  const result = useApi<TransactionSearchResponse>("/transactions", apiFilters(location, FILTERS, window), props.tick);
  const [sort, setSort] = useState<[string, SortDir]>(["start", "desc"]);
  const filtered = FILTERS.some((f) => location.params.get(f)) || location.params.toString().includes("label.");
  const rows = result.data?.transactions ?? [];
  return (
    <div class="view">
      <h1>Transactions</h1>
      <ServiceOptions window={window} tick={props.tick} />
      <FilterForm
        key={location.params.toString()}
        location={location}
        label="Transaction filters"
        testid="transaction-filters"
        fields={[
          { name: "service", label: "Service / function", list: "service-names", placeholder: "any" },
          { name: "resource", label: "Resource", placeholder: "queue:orders, table:users…" },
          {
            name: "status",
            label: "Status",
            type: "select",
            options: [
              { value: "", label: "any" },
              { value: "error", label: "with errors" },
              { value: "ok", label: "ok" },
              { value: "incomplete", label: "incomplete (a message never consumed)" },
            ],
          },
          { name: "min_ms", label: "Min ms", type: "number" },
          { name: "max_ms", label: "Max ms", type: "number" },
          { name: "q", label: "Any id", placeholder: "trace, request, message id, label value" },
        ]}
      />
      {result.error ? <ErrorBox error={result.error} what="transactions" /> : null}
      {result.loading && !result.data ? <Loading what="transactions" /> : null}
      {result.data && !rows.length ? (
        filtered ? (
          <p class="empty-result" data-testid="no-results">
            No transaction matches these filters in {window.label.toLowerCase()}.
          </p>
        ) : (
          <HowToSendData title="No transactions in this time range" />
        )
      ) : null}
      {rows.length ? (
        <>
          <table class="results" data-testid="transaction-results">
            <thead>
              <tr>
                <SortHeader label="Entry" column="entry" sort={sort} onSort={setSort} />
                <SortHeader label="Start" column="start" sort={sort} onSort={setSort} />
                <SortHeader label="End to end" column="duration" sort={sort} onSort={setSort} />
                <SortHeader label="Services" column="services" sort={sort} onSort={setSort} />
                <SortHeader label="Hops" column="hops" sort={sort} onSort={setSort} />
                <SortHeader label="Errors" column="errors" sort={sort} onSort={setSort} />
                <SortHeader label="Cold starts" column="cold" sort={sort} onSort={setSort} />
              </tr>
            </thead>
            <tbody>
              {sortRows(rows, sort, value).map((t) => (
                <tr key={t.id} class={t.errors ? "error" : ""}>
                  <td>
                    <Link href={carryRange(location, `/transactions/${encodeURIComponent(t.id)}`)}>{entryText(t.entry)}</Link>
                    {t.incomplete ? <span class="badge warn">incomplete</span> : null}
                  </td>
                  <td class="nowrap">{when(t.start)}</td>
                  <td class="num">{ms(t.duration_ms)}</td>
                  <td>{t.services.join(", ")}</td>
                  <td class="num">{t.hops}</td>
                  <td class="num">{t.errors}</td>
                  <td class="num">{t.cold_starts ?? "–"}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <Pager location={location} next={result.data?.next_cursor} noun="transactions" />
        </>
      ) : null}
    </div>
  );
}
