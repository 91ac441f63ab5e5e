// The transactions a trace belongs to (GET /api/v1/transactions?q=<trace id>): how a trace view
// leads to its end-to-end story, and how a batch consumer shows it is shared by several.
import { ErrorBox, Link } from "./common";
import { ms, when } from "./format";
import { useApi } from "./hooks";
import { carryRange, type Location } from "./router";
import type { TransactionSearchResponse } from "./types";
import { entryText } from "./views/transactions";

export function TransactionsOfTrace(props: { location: Location; traceId: string; current?: string }) {
  const result = useApi<TransactionSearchResponse>("/transactions", { q: props.traceId, limit: 50 });
  if (result.error) {
    // An older collector without the graph: the trace view stands on its own.
    return result.error.status === 404 ? null : <ErrorBox error={result.error} what="its transactions" />;
  }
  const found = result.data?.transactions ?? [];
  if (!found.length) return null;
  const others = found.filter((t) => t.id !== props.current);
  if (props.current && !others.length) return null;
  return (
    <section class="membership" data-testid="trace-transactions">
      <h3>
        {props.current
          ? `Shared: this trace also belongs to ${others.length === 1 ? "another transaction" : `${others.length} other transactions`}`
          : found.length === 1
            ? "Part of a transaction"
            : `Part of ${found.length} transactions`}
      </h3>
      <ul>
        {others.map((t) => (
          <li key={t.id}>
            <Link href={carryRange(props.location, `/transactions/${encodeURIComponent(t.id)}`)}>{entryText(t.entry)}</Link>{" "}
            <span class="muted">
              {when(t.start)} · {ms(t.duration_ms)} · {t.services.join(", ")}
              {t.errors ? ` · ${t.errors} errors` : ""}
            </span>
          </li>
        ))}
      </ul>
    </section>
  );
}
