// The live service map: GET /api/v1/map for the window (and a compare window), the graph, a list
// of the same nodes and edges for keyboards and screen readers, and a panel for the selection.
import { useEffect, useMemo, useState } from "preact/hooks";
import { apiGet } from "../api";
import { Drawer, ErrorBox, HowToSendData, Link, Loading } from "../common";
import { ms, pct, plural, show } from "../format";
import { edgeId, edgeLabel, healthOf, metricsOf, type Selection, ServiceMapGraph } from "../graph";
import { useApi } from "../hooks";
import { carryRange, type Location, navigate, withParams } from "../router";
import { killedSummary } from "../killed";
import type { Window } from "../timerange";
import type { MapEdge, MapNode, ServiceMap, TransactionSearchResponse } from "../types";

const COMPARE = [
  { key: "", label: "No comparison" },
  { key: "previous", label: "Compare: previous period" },
  { key: "1d", label: "Compare: a day earlier" },
  { key: "7d", label: "Compare: a week earlier" },
];

function compareWindow(key: string, window: Window): { from: number; to: number } | null {
  const span = window.to - window.from;
  const shift = key === "previous" ? span : key === "1d" ? 86_400_000 : key === "7d" ? 7 * 86_400_000 : 0;
  return shift ? { from: window.from - shift, to: window.to - shift } : null;
}

const SERVICE_KINDS = new Set(["function", "service"]);

/** The transaction search through a node: by service name, or by the resource's node id (kind:name). */
function throughFilter(node: MapNode): Record<string, string> {
  return SERVICE_KINDS.has(node.kind) ? { service: node.name } : { resource: node.id };
}

function Sparkline(props: { values: (number | null)[]; label: string; testid: string }) {
  const values = props.values.map((v) => v ?? 0);
  if (values.length < 2) return null;
  const max = Math.max(...values, 1e-9);
  const points = values.map((v, i) => `${(i / (values.length - 1)) * 100},${30 - (v / max) * 28}`).join(" ");
  return (
    <figure class="spark" data-testid={props.testid} data-values={props.values.map((v) => v ?? "").join(",")}>
      <svg viewBox="0 0 100 30" preserveAspectRatio="none" role="img" aria-label={props.label}>
        <polyline points={points} fill="none" stroke="currentColor" stroke-width="1.5" vector-effect="non-scaling-stroke" />
      </svg>
      <figcaption>{props.label}</figcaption>
    </figure>
  );
}

interface Point {
  count: number;
  errors: number;
  p95_ms: number | null;
}

const BUCKETS = 12;

/** The window cut into up to 12 whole-minute slices, each asked of GET /api/v1/map (a merge of
 * stored minutes, so cheap), and this node's or edge's numbers picked out of each. */
function useSeries(selection: NonNullable<Selection>, window: Window, given: unknown): { points: Point[] | null; minutes: number } {
  const totalMinutes = Math.max(1, Math.round((window.to - window.from) / 60_000));
  const minutes = Math.max(1, Math.ceil(totalMinutes / BUCKETS));
  const [points, setPoints] = useState<Point[] | null>(null);
  useEffect(() => {
    if (Array.isArray(given) && given.length > 1) {
      setPoints(given.map((p) => p as Point));
      return undefined;
    }
    setPoints(null);
    const controller = new AbortController();
    const end = Math.ceil(window.to / 60_000) * 60_000;
    const starts: number[] = [];
    for (let t = end - minutes * 60_000; t + minutes * 60_000 > window.from && starts.length < BUCKETS; t -= minutes * 60_000) {
      starts.unshift(t);
    }
    Promise.all(
      starts.map((from) =>
        apiGet<ServiceMap>("/map", { from, to: from + minutes * 60_000 }, controller.signal).then((map) => {
          const items: (MapNode | MapEdge)[] = selection.type === "node" ? map.nodes : map.edges;
          const item = items.find((x) => (selection.type === "node" ? x.id === selection.id : edgeId(x as MapEdge) === selection.id));
          const m = item ? metricsOf(item) : {};
          return {
            count: typeof m.count === "number" ? m.count : 0,
            errors: typeof m.errors === "number" ? m.errors : 0,
            p95_ms: typeof m.p95_ms === "number" ? m.p95_ms : null,
          };
        }),
      ),
    ).then(setPoints, () => undefined);
    return () => controller.abort();
  }, [selection.type, selection.id, window.from, window.to, given]);
  return { points, minutes };
}

/** Rate, errors and p95 over the window as small charts. */
function Charts(props: { item: MapNode | MapEdge; selection: NonNullable<Selection>; window: Window }) {
  const { points, minutes } = useSeries(props.selection, props.window, metricsOf(props.item).series);
  if (!points) return <Loading what="charts" />;
  const most = (values: number[]) => Math.max(0, ...values);
  const counts = points.map((p) => p.count);
  const errors = points.map((p) => p.errors);
  const p95 = points.map((p) => p.p95_ms);
  return (
    <div class="charts" aria-label={`Per ${minutes} min over the window`}>
      <Sparkline values={counts} label={`calls per ${minutes} min (max ${most(counts)})`} testid="chart-calls" />
      <Sparkline values={errors} label={`errors (max ${most(errors)})`} testid="chart-errors" />
      <Sparkline values={p95} label={`p95 (max ${ms(most(p95.map((v) => v ?? 0)))})`} testid="chart-p95" />
    </div>
  );
}

const SHOWN = [
  ["count", "Calls"],
  ["errors", "Errors"],
  ["throttles", "Throttles"],
  ["p50_ms", "p50"],
  ["p95_ms", "p95"],
  ["p99_ms", "p99"],
  ["dwell_p50_ms", "Queue wait p50"],
  ["dwell_p95_ms", "Queue wait p95"],
  ["cold_starts", "Cold starts"],
  ["timeouts", "Timeouts"],
] as const;

function Metrics(props: { item: MapNode | MapEdge; minutes: number }) {
  const m = metricsOf(props.item);
  const count = typeof m.count === "number" ? m.count : 0;
  const h = healthOf(props.item);
  const rows: [string, string][] = props.minutes > 0 ? [["Rate", `${(count / props.minutes).toFixed(2)}/min`]] : [];
  for (const [key, label] of SHOWN) {
    if (m[key] === undefined || m[key] === null) continue;
    const value = m[key];
    rows.push([label, key.endsWith("_ms") && typeof value === "number" ? ms(value) : show(value)]);
    if (key === "errors" && typeof value === "number") rows.push(["Error rate", pct(value, count)]);
  }
  if (h.count) {
    rows.push(["Health", `ok ${pct(h.ok, 1)} · 4xx ${pct(h.c4xx, 1)} · 5xx ${pct(h.c5xx, 1)} · throttled ${pct(h.throttled, 1)}`]);
  }
  const killed = killedSummary((props.item as MapNode).killed);
  if (killed) rows.push(["Killed invocations", killed.replace("killed: ", "")]);
  if (props.item.status) rows.push(["Compared with the earlier window", show(props.item.status)]);
  const delta = m.delta;
  if (delta && typeof delta === "object") {
    for (const [key, label] of SHOWN) {
      const change = (delta as Record<string, unknown>)[key];
      if (typeof change !== "number") continue;
      const sign = change > 0 ? "+" : change < 0 ? "−" : "±";
      const size = key.endsWith("_ms") ? ms(Math.abs(change)) : String(Math.abs(change));
      rows.push([`Δ ${label}`, `${sign}${size}`]);
    }
  }
  return (
    <table class="kv" data-testid="selection-metrics">
      <tbody>
        {rows.map(([k, v]) => (
          <tr key={k}>
            <th scope="row">{k}</th>
            <td>{v}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Slowest(props: { location: Location; window: Window; filter: Record<string, string> }) {
  const result = useApi<TransactionSearchResponse>("/transactions", {
    ...props.filter,
    from: Math.floor(props.window.from),
    to: Math.ceil(props.window.to),
    limit: 100,
  });
  if (result.error) return <ErrorBox error={result.error} what="transactions through it" />;
  if (!result.data) return <Loading what="transactions" />;
  const slowest = [...result.data.transactions].sort((a, b) => b.duration_ms - a.duration_ms).slice(0, 5);
  if (!slowest.length) return <p class="muted">No transaction through it in this window.</p>;
  return (
    <ol class="slowest">
      {slowest.map((t) => (
        <li key={t.id}>
          <Link href={carryRange(props.location, `/transactions/${encodeURIComponent(t.id)}`)}>{ms(t.duration_ms)}</Link>{" "}
          <span class="muted">{typeof t.entry === "object" && t.entry ? `${show(t.entry.trigger)} ${show(t.entry.name)}` : show(t.entry)}</span>
        </li>
      ))}
    </ol>
  );
}

function SelectionPanel(props: {
  location: Location;
  window: Window;
  map: ServiceMap;
  selection: NonNullable<Selection>;
  minutes: number;
  onClose: () => void;
}) {
  const { map, selection, location, window } = props;
  const byId = new Map(map.nodes.map((n) => [n.id, n]));
  if (selection.type === "node") {
    const node = byId.get(selection.id);
    if (!node) return null;
    const filter = throughFilter(node);
    return (
      <Drawer title={`${node.kind}: ${node.name}`} testid="map-panel" onClose={props.onClose}>
        <Metrics item={node} minutes={props.minutes} />
        <Charts item={node} selection={selection} window={window} />
        <h3>Slowest recent transactions through it</h3>
        <Slowest location={location} window={window} filter={filter} />
        <p>
          <Link href={carryRange(location, "/transactions", filter)}>Search transactions through {node.name}</Link>
        </p>
        {SERVICE_KINDS.has(node.kind) ? (
          <p>
            <Link href={carryRange(location, `/functions/${encodeURIComponent(node.name)}`)}>Health of {node.name}</Link> ·{" "}
            <Link href={carryRange(location, "/issues", { function: node.name })}>Issues in {node.name}</Link>
          </p>
        ) : null}
      </Drawer>
    );
  }
  const edge = map.edges.find((e) => edgeId(e) === selection.id);
  if (!edge) return null;
  const source = byId.get(edge.source);
  const target = byId.get(edge.target);
  return (
    <Drawer title={`${source?.name ?? edge.source} → ${target?.name ?? edge.target}`} testid="map-panel" onClose={props.onClose}>
      <p>
        <span class="badge">{edge.kind}</span>
      </p>
      <Metrics item={edge} minutes={props.minutes} />
      <Charts item={edge} selection={selection} window={window} />
      {target ? (
        <p>
          <Link
            href={carryRange(location, "/transactions", throughFilter(target))}
          >
            Search transactions through this edge's target
          </Link>
        </p>
      ) : null}
    </Drawer>
  );
}

export function ElementList(props: { map: ServiceMap; minutes: number; onSelect: (s: Selection) => void }) {
  const names = new Map(props.map.nodes.map((n) => [n.id, n.name]));
  return (
    <div class="element-list">
      <section aria-label="Nodes">
        <h2>Nodes ({props.map.nodes.length})</h2>
        <ul data-testid="map-nodes">
          {props.map.nodes.map((node) => {
            const h = healthOf(node);
            return (
              <li key={node.id}>
                <button type="button" class="linklike" onClick={() => props.onSelect({ type: "node", id: node.id })}>
                  <span class={`kind kind-${node.kind}`}>{node.kind}</span> {node.name}
                </button>{" "}
                <span class="muted">
                  {h.count ? `${plural(h.count, "call")}, ${pct(Number(metricsOf(node).errors ?? 0), h.count)} errors` : "no calls"}
                  {node.status && node.status !== "same" ? ` · ${node.status}` : ""}
                </span>
                {killedSummary(node.killed) ? (
                  <span class="badge bad killed-badge" data-testid="killed-badge">
                    {killedSummary(node.killed)}
                  </span>
                ) : null}
              </li>
            );
          })}
        </ul>
      </section>
      <section aria-label="Edges">
        <h2>Edges ({props.map.edges.length})</h2>
        <ul data-testid="map-edges">
          {props.map.edges.map((edge) => (
            <li key={edgeId(edge)}>
              <button type="button" class="linklike" onClick={() => props.onSelect({ type: "edge", id: edgeId(edge) })}>
                {names.get(edge.source) ?? edge.source} → {names.get(edge.target) ?? edge.target}
              </button>{" "}
              <span class="muted">
                {edge.kind} · {edgeLabel(edge, props.minutes)}
                {edge.status && edge.status !== "same" ? ` · ${edge.status}` : ""}
              </span>
            </li>
          ))}
        </ul>
      </section>
    </div>
  );
}

export function MapView(props: { location: Location; window: Window; tick: number }) {
  const { location, window } = props;
  const compareKey = location.params.get("compare") ?? "";
  const compare = compareWindow(compareKey, window);
  const params = {
    from: Math.floor(window.from),
    to: Math.ceil(window.to),
    compare_from: compare ? Math.floor(compare.from) : undefined,
    compare_to: compare ? Math.ceil(compare.to) : undefined,
  };
  const result = useApi<ServiceMap>("/map", params, props.tick);
  const [selection, setSelection] = useState<Selection>(null);
  const minutes = (window.to - window.from) / 60_000;
  // Keep the graph (and its layout) unless the data really changed.
  const mapKey = result.data ? JSON.stringify(result.data) : "";
  const map = useMemo(() => result.data, [mapKey]);
  return (
    <div class={`view map-view${selection ? " with-drawer" : ""}`}>
      <div class="view-head">
        <h1>Service map</h1>
        <label>
          <span class="sr-only">Compare with</span>
          <select
            name="compare"
            value={compareKey}
            onChange={(e) => navigate(withParams(location, { compare: (e.currentTarget as HTMLSelectElement).value }))}
          >
            {COMPARE.map((c) => (
              <option key={c.key} value={c.key}>
                {c.label}
              </option>
            ))}
          </select>
        </label>
        <span class="legend" aria-label="Legend">
          <span class="swatch ok" /> ok <span class="swatch c4xx" /> 4xx <span class="swatch c5xx" /> 5xx{" "}
          <span class="swatch throttled" /> throttled · edges: solid sync, dashed publish, dotted deliver
        </span>
      </div>
      {result.error ? (
        <>
          <ErrorBox error={result.error} what="the service map" />
          <p>
            Meanwhile the <Link href={carryRange(location, "/services")}>services</Link> and{" "}
            <Link href={carryRange(location, "/spans")}>span search</Link> work from the spans alone.
          </p>
        </>
      ) : null}
      {result.loading && !map ? <Loading what="the service map" /> : null}
      {map && !map.nodes.length ? <HowToSendData title={`Nothing on the map for ${window.label.toLowerCase()}`} /> : null}
      {map && map.nodes.length ? (
        <>
          <ServiceMapGraph map={map} minutes={minutes} selection={selection} onSelect={setSelection} testid="service-map" />
          <ElementList map={map} minutes={minutes} onSelect={setSelection} />
        </>
      ) : null}
      {map && selection ? (
        <SelectionPanel
          location={location}
          window={window}
          map={map}
          selection={selection}
          minutes={minutes}
          onClose={() => setSelection(null)}
        />
      ) : null}
    </div>
  );
}
