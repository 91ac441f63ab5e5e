// A function's health over the window (GET /api/v1/functions/{name}/health): totals, per-minute
// charts, warnings, and the change against the window before it.
import { BarChart } from "../charts";
import { ErrorBox, Link, Loading } from "../common";
import { ms, when } from "../format";
import { useApi } from "../hooks";
import { carryRange, type Location } from "../router";
import type { Window } from "../timerange";

type Classes = Record<string, number>;

interface Totals {
  invocations: number;
  errors: number;
  error_rate: number;
  errors_by_class: Classes;
  throttles: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  cold_starts: number;
  cold_start_rate: number;
  timeouts: number;
  init_p95_ms: number | null;
  memory_peak_bytes: number | null;
  memory_limit_bytes: number | null;
  memory_share_max: number | null;
  deadline_share_max: number | null;
  near_timeout: number;
  retries: number;
  record_age_max_ms: number | null;
  record_age_p95_ms: number | null;
  concurrency_avg: number;
  concurrency_peak: number;
}

interface Minute {
  minute: string;
  invocations: number;
  errors: number;
  errors_by_class: Classes;
  throttles: number;
  cold_starts: number;
  timeouts: number;
  p95_ms: number | null;
  init_p95_ms: number | null;
  memory_peak_bytes: number | null;
  retries: number;
  record_age_max_ms: number | null;
  concurrency_avg: number;
  concurrency_peak: number;
}

interface Health {
  function: string;
  node: string;
  from: string;
  to: string;
  totals: Totals;
  series: Minute[];
  warnings: { kind: string; share: number; above: number }[];
  compare?: { from: string; to: string; totals: Totals };
  delta?: Record<string, number | null | Classes>;
}

const CLASS_LABELS: Record<string, string> = {
  exception: "exceptions",
  http_5xx: "HTTP 5xx",
  timeout: "timeouts",
  error: "other errors",
};

const WARNING_TEXT: Record<string, string> = {
  cold_starts: "Cold starts",
  throttles: "Throttles",
};

const MIB = 1024 * 1024;

function mib(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined ? "–" : `${(bytes / MIB).toFixed(0)} MiB`;
}

function percent(share: number): string {
  return `${(share * 100).toFixed(share < 0.1 ? 1 : 0)} %`;
}

function Delta(props: { value: unknown; unit?: "ms" | "share"; lowerIsBetter?: boolean }) {
  const v = props.value;
  if (typeof v !== "number" || v === 0) return props.value === 0 ? <span class="delta muted">±0</span> : null;
  const text = props.unit === "ms" ? ms(Math.abs(v)) : props.unit === "share" ? percent(Math.abs(v)) : String(Math.abs(v));
  const worse = props.lowerIsBetter === false ? v < 0 : v > 0;
  return (
    <span class={`delta ${worse ? "worse" : "better"}`} title="against the earlier window">
      {v > 0 ? "+" : "−"}
      {text}
    </span>
  );
}

function Figure(props: { label: string; value: string; delta?: unknown; unit?: "ms" | "share"; testid: string; lowerIsBetter?: boolean }) {
  return (
    <div class="figure" data-testid={props.testid}>
      <span class="figure-label">{props.label}</span>
      <span class="figure-value">{props.value}</span>
      {props.delta !== undefined ? <Delta value={props.delta} unit={props.unit} lowerIsBetter={props.lowerIsBetter} /> : null}
    </div>
  );
}

export function FunctionHealthView(props: { location: Location; window: Window; tick: number; name: string }) {
  const { location, window, name } = props;
  const length = window.to - window.from;
  const params = {
    from: String(Math.round(window.from)),
    to: String(Math.round(window.to)),
    compare_from: String(Math.round(window.from - length)),
    compare_to: String(Math.round(window.from)),
  };
  const result = useApi<Health>(`/functions/${encodeURIComponent(name)}/health`, params, props.tick);
  const h = result.data;
  const d = h?.delta ?? {};
  const classes = (d.errors_by_class ?? {}) as Classes;
  return (
    <div class="view health-view">
      <p class="crumbs">
        <Link href={carryRange(location, "/map")}>« Service map</Link> ·{" "}
        <Link href={carryRange(location, "/issues", { function: name })}>Issues in {name}</Link> ·{" "}
        <Link href={carryRange(location, "/issues", { function: name, kind: "warning" })}>Its warnings</Link> ·{" "}
        <Link href={carryRange(location, "/transactions", { service: name })}>Transactions through {name}</Link>
      </p>
      <h1>
        Health of <span data-testid="health-function">{name}</span>
      </h1>
      {result.error ? <ErrorBox error={result.error} what={`the health of ${name}`} /> : null}
      {result.loading && !h ? <Loading what="the function's health" /> : null}
      {h ? (
        <>
          <p class="muted">
            {when(h.from)} – {when(h.to)}
            {h.compare ? (
              <>
                {" "}
                · changes against {when(h.compare.from)} – {when(h.compare.to)}
              </>
            ) : null}
          </p>
          {h.totals.invocations === 0 ? (
            <p class="empty-result" data-testid="health-empty">
              No invocation of {name} in {window.label.toLowerCase()}.
            </p>
          ) : null}
          {h.warnings.length ? (
            <ul class="warnings" data-testid="health-warnings">
              {h.warnings.map((w) => (
                <li key={w.kind} class="api-error">
                  {WARNING_TEXT[w.kind] ?? w.kind}: {percent(w.share)} of invocations (above {percent(w.above)})
                </li>
              ))}
            </ul>
          ) : null}
          <div class="figures" data-testid="health-totals">
            <Figure label="Invocations" value={String(h.totals.invocations)} delta={d.invocations} testid="fig-invocations" lowerIsBetter={false} />
            <Figure
              label="Errors"
              value={`${h.totals.errors} (${percent(h.totals.error_rate)})`}
              delta={d.errors}
              testid="fig-errors"
            />
            <Figure label="Throttles" value={String(h.totals.throttles)} delta={d.throttles} testid="fig-throttles" />
            <Figure label="p50" value={ms(h.totals.p50_ms)} delta={d.p50_ms} unit="ms" testid="fig-p50" />
            <Figure label="p95" value={ms(h.totals.p95_ms)} delta={d.p95_ms} unit="ms" testid="fig-p95" />
            <Figure label="p99" value={ms(h.totals.p99_ms)} delta={d.p99_ms} unit="ms" testid="fig-p99" />
            <Figure
              label="Cold starts"
              value={`${h.totals.cold_starts} (${percent(h.totals.cold_start_rate)})`}
              delta={d.cold_starts}
              testid="fig-cold"
            />
            <Figure label="Timeouts" value={String(h.totals.timeouts)} delta={d.timeouts} testid="fig-timeouts" />
            <Figure label="Init p95" value={ms(h.totals.init_p95_ms)} delta={d.init_p95_ms} unit="ms" testid="fig-init" />
            <Figure
              label="Peak memory"
              value={
                h.totals.memory_peak_bytes === null
                  ? "–"
                  : `${mib(h.totals.memory_peak_bytes)}${h.totals.memory_limit_bytes ? ` of ${mib(h.totals.memory_limit_bytes)}` : ""}`
              }
              testid="fig-memory"
            />
            <Figure
              label="Deadline used (max)"
              value={h.totals.deadline_share_max === null ? "–" : percent(h.totals.deadline_share_max)}
              delta={d.deadline_share_max}
              unit="share"
              testid="fig-deadline"
            />
            <Figure
              label="Concurrency (avg / peak)"
              value={`${h.totals.concurrency_avg} / ${h.totals.concurrency_peak}`}
              delta={d.concurrency_peak}
              testid="fig-concurrency"
              lowerIsBetter={false}
            />
            <Figure label="Retries" value={String(h.totals.retries)} delta={d.retries} testid="fig-retries" />
            <Figure label="Oldest record (max)" value={ms(h.totals.record_age_max_ms)} delta={d.record_age_max_ms} unit="ms" testid="fig-record-age" />
          </div>
          <h2>Errors by class</h2>
          <table class="kv by-class" data-testid="errors-by-class">
            <tbody>
              {Object.entries(h.totals.errors_by_class).map(([kind, n]) => (
                <tr key={kind} data-class={kind}>
                  <th scope="row">{CLASS_LABELS[kind] ?? kind}</th>
                  <td class="num">{n}</td>
                  <td class="num">{kind in classes ? <Delta value={classes[kind]} /> : null}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h2>Per minute</h2>
          <div class="charts" data-testid="health-charts">
            <BarChart title="Invocations" values={h.series.map((m) => m.invocations)} from={when(h.from)} to={when(h.to)} testid="chart-invocations" />
            <BarChart title="Errors" values={h.series.map((m) => m.errors)} from={when(h.from)} to={when(h.to)} testid="chart-errors" tone="bad" />
            <BarChart title="Throttles" values={h.series.map((m) => m.throttles)} from={when(h.from)} to={when(h.to)} testid="chart-throttles" tone="warn" />
            <BarChart title="p95 duration" values={h.series.map((m) => m.p95_ms)} unit=" ms" from={when(h.from)} to={when(h.to)} testid="chart-p95" />
            <BarChart title="Cold starts" values={h.series.map((m) => m.cold_starts)} from={when(h.from)} to={when(h.to)} testid="chart-cold" />
            <BarChart title="Timeouts" values={h.series.map((m) => m.timeouts)} from={when(h.from)} to={when(h.to)} testid="chart-timeouts" tone="bad" />
            <BarChart title="Concurrency (busiest second)" values={h.series.map((m) => m.concurrency_peak)} from={when(h.from)} to={when(h.to)} testid="chart-concurrency" />
            <BarChart title="Peak memory" values={h.series.map((m) => (m.memory_peak_bytes === null ? null : m.memory_peak_bytes / MIB))} unit=" MiB" from={when(h.from)} to={when(h.to)} testid="chart-memory" tone="warn" />
            <BarChart title="Init p95 (cold starts)" values={h.series.map((m) => m.init_p95_ms)} unit=" ms" from={when(h.from)} to={when(h.to)} testid="chart-init" />
            <BarChart title="Oldest record at invocation" values={h.series.map((m) => m.record_age_max_ms)} unit=" ms" from={when(h.from)} to={when(h.to)} testid="chart-record-age" tone="warn" />
            <BarChart title="Retries" values={h.series.map((m) => m.retries)} from={when(h.from)} to={when(h.to)} testid="chart-retries" />
          </div>
        </>
      ) : null}
    </div>
  );
}
