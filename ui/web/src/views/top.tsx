// Top-N with trends (GET /api/v1/top): the slowest, most called and most failing functions, API
// routes and transaction entries of the window, each against the same window a week earlier.
import { ErrorBox, Link, Loading } from "../common";
import { ms, when } from "../format";
import { useApi } from "../hooks";
import { carryRange, type Location } from "../router";
import type { Window } from "../timerange";

interface Figures {
  count: number;
  errors: number;
  error_rate: number;
  p50_ms: number | null;
  p95_ms: number | null;
}

interface Item extends Figures {
  name: string;
  previous: Figures;
  new: boolean;
  change: Record<"count" | "errors" | "error_rate" | "p95_ms", number | null>;
}

type Rankings = Record<"slowest" | "most_called" | "most_failing", Item[]>;

interface Top {
  from: string;
  to: string;
  compare_from: string;
  compare_to: string;
  functions: Rankings;
  routes: Rankings;
  entries: Rankings;
  truncated: boolean;
}

const GROUPS: { key: "functions" | "routes" | "entries"; title: string }[] = [
  { key: "functions", title: "Functions" },
  { key: "routes", title: "API routes" },
  { key: "entries", title: "Transaction entries" },
];

const RANKINGS: { key: keyof Rankings; title: string; metric: "p95_ms" | "count" | "errors" }[] = [
  { key: "slowest", title: "Slowest (p95)", metric: "p95_ms" },
  { key: "most_called", title: "Most called", metric: "count" },
  { key: "most_failing", title: "Most failing", metric: "errors" },
];

/** The week-over-week change of one figure: "+25 %", "new", or "–" when there is nothing to compare. */
function Change(props: { item: Item; metric: "p95_ms" | "count" | "errors" }) {
  const { item, metric } = props;
  if (item.new) return <span class="badge" data-testid="change">new</span>;
  const c = item.change[metric];
  if (c === null) return <span class="muted" data-testid="change">–</span>;
  const up = c > 0;
  // More calls is neither good nor bad; slower or more failures is worse.
  const tone = metric === "count" || c === 0 ? "" : up ? "worse" : "better";
  return (
    <span class={`delta ${tone}`} data-testid="change" title="against the same window a week earlier">
      {c === 0 ? "±0 %" : `${up ? "+" : "−"}${Math.abs(c * 100).toFixed(Math.abs(c) < 0.1 ? 1 : 0)} %`}
    </span>
  );
}

function value(item: Item, metric: "p95_ms" | "count" | "errors"): string {
  if (metric === "p95_ms") return ms(item.p95_ms);
  if (metric === "errors") return `${item.errors} (${(item.error_rate * 100).toFixed(1)} %)`;
  return String(item.count);
}

function previous(item: Item, metric: "p95_ms" | "count" | "errors"): string {
  if (item.new) return "–";
  if (metric === "p95_ms") return ms(item.previous.p95_ms);
  return String(metric === "errors" ? item.previous.errors : item.previous.count);
}

function NameLink(props: { location: Location; group: string; name: string }) {
  const { location, group, name } = props;
  if (group === "functions") {
    return <Link href={carryRange(location, `/functions/${encodeURIComponent(name)}`)}>{name}</Link>;
  }
  return <span>{name}</span>;
}

export function TopView(props: { location: Location; window: Window; tick: number }) {
  const { location, window } = props;
  const params = { from: String(Math.round(window.from)), to: String(Math.round(window.to)), limit: "5" };
  const result = useApi<Top>("/top", params, props.tick);
  const top = result.data;
  return (
    <div class="view top-view">
      <h1>Top functions, routes and transactions</h1>
      {result.error ? <ErrorBox error={result.error} what="the top lists" /> : null}
      {result.loading && !top ? <Loading what="the top lists" /> : null}
      {top ? (
        <>
          <p class="muted">
            {when(top.from)} – {when(top.to)} · week over week: against {when(top.compare_from)} – {when(top.compare_to)}
            {top.truncated ? " · only the newest 50 000 transactions counted" : ""}
          </p>
          {GROUPS.map((g) => (
            <section key={g.key} data-testid={`top-${g.key}`}>
              <h2>{g.title}</h2>
              <div class="top-grid">
                {RANKINGS.map((r) => {
                  const items = top[g.key][r.key];
                  return (
                    <table key={r.key} class="results top" data-testid={`top-${g.key}-${r.key}`}>
                      <caption>{r.title}</caption>
                      <thead>
                        <tr>
                          <th scope="col">Name</th>
                          <th scope="col">Now</th>
                          <th scope="col">Week before</th>
                          <th scope="col">Change</th>
                        </tr>
                      </thead>
                      <tbody>
                        {items.length ? (
                          items.map((item) => (
                            <tr key={item.name} data-testid="top-row" data-name={item.name}>
                              <td>
                                <NameLink location={location} group={g.key} name={item.name} />
                              </td>
                              <td class="num">{value(item, r.metric)}</td>
                              <td class="num muted">{previous(item, r.metric)}</td>
                              <td class="num">
                                <Change item={item} metric={r.metric} />
                              </td>
                            </tr>
                          ))
                        ) : (
                          <tr>
                            <td colSpan={4} class="muted">
                              none in {window.label.toLowerCase()}
                            </td>
                          </tr>
                        )}
                      </tbody>
                    </table>
                  );
                })}
              </div>
            </section>
          ))}
        </>
      ) : null}
    </div>
  );
}
