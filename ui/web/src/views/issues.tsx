// Issues: errors grouped by the collector (GET /api/v1/issues), filters in the URL like the
// searches; one issue's page with its timeline, latest stack traces (text only) and a status
// change (POST /api/v1/issues/{id}/status) whose refusal is shown in the API's own words.
import { useState } from "preact/hooks";
import { type ApiError, apiSend } from "../api";
import { BarChart, binCounts, SparkBars } from "../charts";
import { ErrorBox, Id, Link, Loading, Pager } from "../common";
import { FilterForm } from "../filters";
import { when } from "../format";
import { useApi } from "../hooks";
import { carryRange, type Location } from "../router";
import { LogLines } from "../timeline";
import type { Window } from "../timerange";
import type { LogRecord } from "../types";

export interface Issue {
  id: number;
  kind: string;
  title: string;
  culprit?: string | null;
  functions: string[];
  count: number;
  first_seen: string;
  last_seen: string;
  status: string;
  regression: boolean;
  status_changed?: string | null;
  subtype?: string;
  spark?: number[];
}

interface Occurrence {
  trace_id: string;
  span_id: string;
  time: string;
  function: string | null;
  message: string | null;
  stacktrace: string | null;
  transaction_ids: string[];
  logs?: LogRecord[];
}

interface Notification {
  id: number;
  channel_id: number;
  rule_id: number | null;
  event: string;
  created: string;
  state: string;
  attempts: number;
  last_error: string | null;
  done: string | null;
}

interface IssueDetail extends Issue {
  timeline: { from: string; to: string; minutes: { minute: string; count: number }[] };
  occurrences: Occurrence[];
  notifications: Notification[];
}

const KIND_LABELS: Record<string, string> = {
  exception: "exception",
  http_5xx: "HTTP 5xx",
  timeout: "timeout",
  error: "error",
  warning: "warning",
};

const SPARK_BINS = 24;

export function StatusBadge(props: { issue: Issue }) {
  const { issue } = props;
  const tone = issue.status === "open" ? "bad" : issue.status === "ignored" ? "" : "ok";
  return (
    <>
      <span class={`badge status ${tone}`} data-testid="issue-status">
        {issue.status}
      </span>
      {issue.regression ? (
        <span class="badge warn" data-testid="regression" title="It came back after being resolved">
          regression
        </span>
      ) : null}
    </>
  );
}

/** The count sparkline of one issue over the window, binned by the list API (`spark`), so the
 * list makes one request however many issues it shows. */
function CountSpark(props: { issue: Issue; window: Window }) {
  const { issue, window } = props;
  if (!issue.spark) return <span class="sparkbars-empty" />;
  return <SparkBars values={issue.spark} label={`occurrences of issue ${issue.id} over ${window.label.toLowerCase()}`} testid="issue-spark" />;
}

export function FunctionLinks(props: { location: Location; functions: string[] }) {
  return (
    <>
      {props.functions.map((name, i) => (
        <span key={name}>
          {i ? ", " : ""}
          <Link href={carryRange(props.location, `/functions/${encodeURIComponent(name)}`)} title={`Health of ${name}`}>
            {name}
          </Link>
        </span>
      ))}
    </>
  );
}

const FILTERS = ["status", "kind", "function"];

export function IssuesView(props: { location: Location; window: Window; tick: number }) {
  const { location, window } = props;
  const params: Record<string, string> = {
    from: String(Math.round(window.from)),
    to: String(Math.round(window.to)),
    limit: "100",
    spark: String(SPARK_BINS),
  };
  for (const f of [...FILTERS, "cursor"]) {
    const v = location.params.get(f);
    if (v) params[f] = v;
  }
  const result = useApi<{ issues: Issue[]; next_cursor: string | null }>("/issues", params, props.tick);
  const rows = result.data?.issues ?? [];
  const filtered = FILTERS.some((f) => location.params.get(f));
  return (
    <div class="view">
      <h1>Issues</h1>
      <FilterForm
        key={location.params.toString()}
        location={location}
        label="Issue filters"
        testid="issue-filters"
        labels={false}
        fields={[
          {
            name: "status",
            label: "Status",
            type: "select",
            options: [
              { value: "", label: "any" },
              { value: "open", label: "open" },
              { value: "resolved", label: "resolved" },
              { value: "ignored", label: "ignored" },
            ],
          },
          {
            name: "kind",
            label: "Kind",
            type: "select",
            options: [{ value: "", label: "any" }, ...Object.entries(KIND_LABELS).map(([value, label]) => ({ value, label }))],
          },
          { name: "function", label: "Function", placeholder: "any" },
        ]}
      />
      {result.error ? <ErrorBox error={result.error} what="issues" /> : null}
      {result.loading && !result.data ? <Loading what="issues" /> : null}
      {result.data && !rows.length ? (
        <p class="empty-result" data-testid="no-issues">
          {filtered ? "No issue matches these filters" : "No issue was seen"} in {window.label.toLowerCase()}.
        </p>
      ) : null}
      {rows.length ? (
        <>
          <table class="results issues" data-testid="issue-results">
            <thead>
              <tr>
                <th scope="col">Kind</th>
                <th scope="col">Title</th>
                <th scope="col">Functions</th>
                <th scope="col">Count</th>
                <th scope="col">Over {window.label.toLowerCase()}</th>
                <th scope="col">First seen</th>
                <th scope="col">Last seen</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((issue) => (
                <tr key={issue.id} data-testid="issue-row" data-issue-id={issue.id}>
                  <td>
                    <span class="badge">{KIND_LABELS[issue.kind] ?? issue.kind}</span>
                  </td>
                  <td class="title">
                    <Link href={carryRange(location, `/issues/${issue.id}`)}>{issue.title}</Link>
                    {issue.culprit ? <div class="muted small">{issue.culprit}</div> : null}
                  </td>
                  <td>
                    <FunctionLinks location={location} functions={issue.functions} />
                  </td>
                  <td class="num" data-testid="issue-count">
                    {issue.count}
                  </td>
                  <td>
                    <CountSpark issue={issue} window={window} />
                  </td>
                  <td class="nowrap">{when(issue.first_seen)}</td>
                  <td class="nowrap">{when(issue.last_seen)}</td>
                  <td>
                    <StatusBadge issue={issue} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <Pager location={location} next={result.data?.next_cursor} noun="issues" />
        </>
      ) : null}
    </div>
  );
}

const ACTIONS: { status: string; label: string; when: (s: string) => boolean }[] = [
  { status: "resolved", label: "Resolve", when: (s) => s !== "resolved" },
  { status: "ignored", label: "Ignore", when: (s) => s !== "ignored" },
  { status: "open", label: "Reopen", when: (s) => s !== "open" },
];

function StatusActions(props: { issue: Issue; onChanged: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const change = (status: string) => {
    setBusy(true);
    setError(null);
    apiSend<Issue>("POST", `/issues/${props.issue.id}/status`, { status }).then(
      () => {
        setBusy(false);
        props.onChanged();
      },
      (err: ApiError) => {
        setBusy(false);
        setError(err);
      },
    );
  };
  return (
    <div class="status-actions" role="group" aria-label="Change the status">
      {ACTIONS.filter((a) => a.when(props.issue.status)).map((a) => (
        <button type="button" key={a.status} disabled={busy} onClick={() => change(a.status)} data-testid={`issue-${a.status}`}>
          {a.label}
        </button>
      ))}
      {error ? (
        <p class="api-error" role="alert" data-testid="status-error">
          The status was not changed: <code>HTTP {error.status || "–"}</code> <span class="error-detail">{error.detail}</span>
        </p>
      ) : null}
    </div>
  );
}

function Occurrences(props: { location: Location; occurrences: Occurrence[] }) {
  const { location } = props;
  if (!props.occurrences.length) return <p class="muted">No occurrence is kept for this issue.</p>;
  return (
    <ol class="occurrences" data-testid="occurrences">
      {props.occurrences.map((o) => (
        <li key={`${o.trace_id}:${o.span_id}`} data-testid="occurrence">
          <div class="occ-head">
            <span class="nowrap">{when(o.time)}</span> {o.function ? <span class="badge">{o.function}</span> : null}{" "}
            {o.transaction_ids.length ? (
              o.transaction_ids.map((t) => (
                <Link key={t} href={carryRange(location, `/transactions/${encodeURIComponent(t)}`)}>
                  transaction {t.slice(0, 12)}…
                </Link>
              ))
            ) : (
              <Link href={carryRange(location, `/traces/${encodeURIComponent(o.trace_id)}`)}>trace {o.trace_id.slice(0, 12)}…</Link>
            )}
          </div>
          {o.message ? (
            <p class="occ-message" data-testid="occurrence-message">
              {o.message}
            </p>
          ) : null}
          {o.stacktrace ? (
            <pre class="stacktrace" data-testid="stacktrace">
              {o.stacktrace}
            </pre>
          ) : null}
          {o.logs?.length ? (
            <details class="occ-logs" data-testid="occurrence-logs">
              <summary>Logs of its trace ({o.logs.length})</summary>
              <LogLines logs={o.logs} />
            </details>
          ) : null}
        </li>
      ))}
    </ol>
  );
}

function Notifications(props: { notifications: Notification[] }) {
  if (!props.notifications.length) return <p class="muted" data-testid="no-notifications">No notification was sent about it.</p>;
  return (
    <table class="results" data-testid="notifications">
      <thead>
        <tr>
          <th scope="col">Created</th>
          <th scope="col">Event</th>
          <th scope="col">Channel</th>
          <th scope="col">Rule</th>
          <th scope="col">State</th>
          <th scope="col">Attempts</th>
          <th scope="col">Last error</th>
        </tr>
      </thead>
      <tbody>
        {props.notifications.map((n) => (
          <tr key={n.id}>
            <td class="nowrap">{when(n.created)}</td>
            <td>{n.event}</td>
            <td class="num">{n.channel_id}</td>
            <td class="num">{n.rule_id ?? "–"}</td>
            <td>
              <span class={`badge ${n.state === "delivered" ? "ok" : n.state === "pending" ? "warn" : "bad"}`}>{n.state}</span>
            </td>
            <td class="num">{n.attempts}</td>
            <td>{n.last_error ?? ""}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function IssueView(props: { location: Location; window: Window; tick: number; id: string }) {
  const { location, window } = props;
  const [version, setVersion] = useState(0);
  const params = { from: String(Math.round(window.from)), to: String(Math.round(window.to)), occurrences: "10" };
  const result = useApi<IssueDetail>(`/issues/${encodeURIComponent(props.id)}`, params, `${props.tick}:${version}`);
  const issue = result.data;
  return (
    <div class="view issue-view">
      <p class="crumbs">
        <Link href={carryRange(location, "/issues")}>« Issues</Link>
      </p>
      {result.error ? <ErrorBox error={result.error} what={`issue ${props.id}`} /> : null}
      {result.loading && !issue ? <Loading what="the issue" /> : null}
      {issue ? (
        <>
          <h1 data-testid="issue-title">{issue.title}</h1>
          <p class="issue-facts">
            <span class="badge">{KIND_LABELS[issue.kind] ?? issue.kind}</span> <StatusBadge issue={issue} />{" "}
            <span>
              <strong data-testid="issue-total">{issue.count}</strong> occurrences
            </span>{" "}
            · first seen {when(issue.first_seen)} · last seen {when(issue.last_seen)}
            {issue.functions.length ? (
              <>
                {" "}
                · in <FunctionLinks location={location} functions={issue.functions} />
              </>
            ) : null}
          </p>
          {issue.culprit ? (
            <p class="muted">
              Culprit: <code>{issue.culprit}</code>
            </p>
          ) : null}
          <StatusActions issue={issue} onChanged={() => setVersion((v) => v + 1)} />
          <h2>Timeline</h2>
          <IssueTimeline issue={issue} window={window} />
          <h2>Latest occurrences</h2>
          <Occurrences location={location} occurrences={issue.occurrences} />
          <h2>Notifications</h2>
          <Notifications notifications={issue.notifications} />
          <p class="muted small">
            Issue <Id value={String(issue.id)} label="issue id" />
          </p>
        </>
      ) : null}
    </div>
  );
}

function IssueTimeline(props: { issue: IssueDetail; window: Window }) {
  const { window } = props;
  const minutes = Math.max(1, Math.round((window.to - window.from) / 60_000));
  const bins = Math.min(minutes, 60);
  const values = binCounts(props.issue.timeline.minutes, window.from, window.to, bins);
  const each = Math.max(1, Math.round(minutes / bins));
  return (
    <BarChart
      title={each === 1 ? "Occurrences per minute" : `Occurrences per ${each} minutes`}
      values={values}
      from={when(props.issue.timeline.from)}
      to={when(props.issue.timeline.to)}
      testid="issue-timeline"
      tone="bad"
    />
  );
}
